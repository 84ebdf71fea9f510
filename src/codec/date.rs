//! AAAAMMJJ dates, including lunar dates (day or month 00).
//! OWNER: codec/Vitale helper. Skeleton only.
