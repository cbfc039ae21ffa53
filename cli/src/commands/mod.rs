//! One module per subcommand.

pub mod add;
pub mod amend;
pub mod demo;
pub mod history;
pub mod init;
pub mod list;
pub mod serve;
pub mod sync;
