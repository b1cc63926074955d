//! One integration-test binary: every test runs the real `labrun` binary.

mod aws;
mod exercise;
mod harness;
mod lab;
mod local;
mod mysql;
mod runtime;
mod ssh;
