//! The one time unit the sans-IO core speaks: drivers pass `now` in it. It has its own module so
//! the node and its helpers (suspects, the simulator) share it without importing each other.

/// Milliseconds on the driver's monotonic clock (real or virtual).
pub type Millis = u64;
