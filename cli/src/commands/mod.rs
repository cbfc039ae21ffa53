//! One module per subcommand.

pub mod add;
pub mod amend;
pub mod demo;
pub mod export;
pub mod history;
pub mod init;
pub mod list;
pub mod nearby;
pub mod provider;
pub mod relays;
pub mod replica;
pub mod serve;
pub mod sessions;
pub mod share;
pub mod share_link;
pub mod sync;
pub(crate) mod wallet_card;
pub mod wearables;
