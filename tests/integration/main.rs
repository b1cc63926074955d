//! One integration-test binary: every test runs the real `labrun` binary.

mod apt_cache;
mod authoring;
mod aws;
mod class;
mod exercise;
mod faults;
mod grants;
mod harness;
mod lab;
mod local;
mod mysql;
mod private;
mod runtime;
mod ssh;
