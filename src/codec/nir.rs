//! NIR (numéro d'inscription au répertoire) key checks, Corsica 2A/2B included.
//! OWNER: codec/Vitale helper. Skeleton only.
