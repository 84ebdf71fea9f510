//! PC/SC backend (crate `pcsc`): event-driven monitor and card access.
//! OWNER: pcsc helper. Skeleton only.
