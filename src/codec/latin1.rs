//! ISO-8859-1 text from cards, to trimmed UTF-8.
//! OWNER: codec/Vitale helper. Skeleton only.
