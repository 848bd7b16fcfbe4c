//! Optimizers: strategies that propose candidate overlays and keep the best.
pub mod knn;
