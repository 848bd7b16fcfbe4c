//! The signature shorthand parser. (being built)
