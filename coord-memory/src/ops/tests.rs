//! Unit tests of listing walks.
