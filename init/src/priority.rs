//! CPU priority of boot-time helper threads (module loads, prefetch, growing /data):
//! work nothing on the way to a served LAN waits for runs niced, so the services
//! starting beside it come first. A process a niced thread starts inherits its nice.

/// Sets the calling thread's nice value (Linux applies it per thread).
pub fn nice_this_thread(nice: i32) -> std::io::Result<()> {
    let tid = nix::unistd::gettid().as_raw() as libc::id_t;
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lowers_only_this_thread() {
        let before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let inside = std::thread::spawn(|| {
            super::nice_this_thread(19).unwrap();
            let tid = nix::unistd::gettid().as_raw() as libc::id_t;
            unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) }
        })
        .join()
        .unwrap();
        assert_eq!(inside, 19);
        assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, before);
    }
}
