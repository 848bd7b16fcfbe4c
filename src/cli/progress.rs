//! Progress reporting for the terminal (indicatif), implementing the library reporter traits.
