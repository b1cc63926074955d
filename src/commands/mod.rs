//! One file per subcommand. Each returns how it went (`Ok(Exit)`) or the
//! error that stopped it; `lib.rs` renders errors, in one place.

pub mod class;
pub mod completions;
pub mod definitions;
pub mod destroy;
pub mod docs;
pub mod exercise;
pub mod images;
pub mod man;
pub mod run;
pub mod secret;
pub mod sg;
pub mod ssh;
pub mod status;
pub mod validate;
