//! Support shared by coordctl's integration tests (each test file that needs
//! it declares `mod support;`).

// Each test binary compiles this module and uses a part of it.
#[allow(dead_code)]
pub mod browser;
