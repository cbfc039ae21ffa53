//! The process's file-descriptor limit: raised at start-up (soft
//! RLIMIT_NOFILE up to the hard limit, where the OS allows it) and used to
//! keep the connection cap below it, so accepting never fails with "Too
//! many open files".

/// Descriptors kept for everything but client connections: the database
/// and its journal, PostgreSQL pool connections, stdio, the listener.
pub const HEADROOM: usize = 128;

/// Raise the soft limit to the hard limit if allowed; the soft limit in
/// force afterwards (`None` where there is no such limit).
#[cfg(unix)]
pub fn raise() -> Option<u64> {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the file-descriptor limit");
    }
    current()
}

/// Raise the soft limit to the hard limit if allowed; the soft limit in
/// force afterwards (`None` where there is no such limit).
#[cfg(not(unix))]
pub fn raise() -> Option<u64> {
    None
}

/// The soft limit in force (`None` where there is no such limit).
#[cfg(unix)]
pub fn current() -> Option<u64> {
    rlimit::Resource::NOFILE.get_soft().ok()
}

/// The soft limit in force (`None` where there is no such limit).
#[cfg(not(unix))]
pub fn current() -> Option<u64> {
    None
}

/// The most connections that fit under a soft limit of `nofile`
/// descriptors, keeping [`HEADROOM`] and `reserve` spare.
pub fn fit(wanted: usize, reserve: usize, nofile: Option<u64>) -> usize {
    let Some(nofile) = nofile else {
        return wanted;
    };
    let available = usize::try_from(nofile)
        .unwrap_or(usize::MAX)
        .saturating_sub(HEADROOM)
        .saturating_sub(reserve);
    wanted.min(available).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_under_the_descriptor_limit() {
        assert_eq!(fit(8192, 32, Some(1024)), 1024 - HEADROOM - 32);
        assert_eq!(fit(100, 32, Some(1_000_000)), 100);
        assert_eq!(fit(100, 32, None), 100);
        assert_eq!(fit(100, 32, Some(10)), 1);
    }
}
