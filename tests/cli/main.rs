//! Black-box tests of the `fieldsync` binary: real processes, real sled
//! stores in temporary directories, real signals.

mod bad_input;
mod crash;
mod demo;
mod field_app;
mod lifecycle;
mod support;
