//! A lease beside a lock: `lease.json` next to a sweep's or a run's `lock`, naming the holder
//! (host, pid, start) and refreshed by it every [`LEASE_REFRESH_SECS`].
//!
//! The locks are `flock`s, which exclude processes on one node but, on NFS mounted with
//! `local_lock=flock`/`all` or Lustre with `localflock`, not processes on two nodes: a
//! requeued Slurm task and its still-running original could both train one run. The lease is
//! plain file contents, which every node sees, so a process that got the flock still refuses
//! while another node's lease is fresh. A holder that dies leaves its lease behind: on its own
//! node it is taken over at once (its pid is gone), elsewhere once its heartbeat is older than
//! [`LEASE_STALE_SECS`].

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{fsio, unix_now};

/// Seconds between a holder's refreshes of its lease. Often enough that a few missed refreshes
/// stay well inside [`LEASE_STALE_SECS`]; rarely enough that a few hundred runs on a shared
/// file system add no load worth noticing (one small atomic write each).
pub const LEASE_REFRESH_SECS: u64 = 30;

/// A lease whose heartbeat is older than this is abandoned and may be taken over. Four refresh
/// intervals: a live holder may miss three (a file system stalled for a minute, a process
/// suspended briefly) without losing its lease, and clocks of two nodes may disagree by tens of
/// seconds. The price: after a node dies without releasing, another node waits this long.
pub const LEASE_STALE_SECS: f64 = 4.0 * LEASE_REFRESH_SECS as f64;

/// The contents of `lease.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub host: String,
    pub pid: u32,
    /// Seconds since the Unix epoch when the holder took the lease.
    pub started: f64,
    /// Seconds since the Unix epoch of the holder's last refresh.
    pub heartbeat: f64,
}

impl LeaseRecord {
    fn mine() -> Self {
        let now = unix_now();
        Self {
            host: hostname(),
            pid: std::process::id(),
            started: now,
            heartbeat: now,
        }
    }

    /// Seconds since the last refresh, by this node's clock.
    pub fn age(&self) -> f64 {
        unix_now() - self.heartbeat
    }

    /// Held by a process that may still be writing: fresh, and not a dead pid of this node.
    fn is_live(&self) -> bool {
        if self.age() >= LEASE_STALE_SECS {
            return false;
        }
        // On this node the pid says it all (and the flock, which works here, already let us
        // in); a fresh lease of another node is taken at its word.
        self.host != hostname() || (self.pid != std::process::id() && pid_alive(self.pid))
    }

    /// The same holder: host, pid and start (to the millisecond: a float read back from JSON
    /// may differ in its last bit).
    fn same_holder(&self, other: &LeaseRecord) -> bool {
        self.host == other.host
            && self.pid == other.pid
            && (self.started - other.started).abs() < 1e-3
    }
}

/// A held lock and its lease, refreshed by a thread until dropped; then the lease file is
/// removed (if still this holder's) and the lock released.
pub struct Lease {
    path: PathBuf,
    record: LeaseRecord,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
    _lock: File,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("path", &self.path)
            .field("record", &self.record)
            .finish()
    }
}

/// Takes the flock on `lock`, then the lease at `lease`: `Ok(None)` if a process of this node
/// holds the flock; an error of kind `ResourceBusy` naming the lease file, host, pid and age if
/// another holder's lease is fresh; an unreadable lease file is an error too (it is written
/// atomically, so it was damaged or edited).
pub fn lock_with_lease(lock: &Path, lease: &Path) -> io::Result<Option<Lease>> {
    lock_with_lease_every(lock, lease, Duration::from_secs(LEASE_REFRESH_SECS))
}

fn lock_with_lease_every(lock: &Path, lease: &Path, every: Duration) -> io::Result<Option<Lease>> {
    let Some(file) = fsio::try_lock(lock)? else {
        return Ok(None);
    };
    if let Some(held) = read(lease)?
        && held.is_live()
    {
        return Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!(
                "{} is held by host {} pid {} (refreshed {:.0} s ago, taken {:.0} s ago): another \
                 node is writing here, and the file system's flock does not exclude it. If that \
                 process is gone, its lease goes stale {:.0} s after its last refresh; remove the \
                 file sooner only if you are sure",
                lease.display(),
                held.host,
                held.pid,
                held.age().max(0.0),
                (unix_now() - held.started).max(0.0),
                LEASE_STALE_SECS
            ),
        ));
    }
    let record = LeaseRecord::mine();
    write(lease, &record)?;
    let (stop, stopped) = mpsc::channel();
    let (path, mine) = (lease.to_path_buf(), record.clone());
    let refresher = std::thread::Builder::new()
        .name("lease".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                if let Err(e) = refresh(&path, &mine) {
                    eprintln!("warning: {e}");
                    return;
                }
            }
        })?;
    Ok(Some(Lease {
        path: lease.to_path_buf(),
        record,
        stop: Some(stop),
        refresher: Some(refresher),
        _lock: file,
    }))
}

impl Lease {
    /// What this holder wrote.
    pub fn record(&self) -> &LeaseRecord {
        &self.record
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.refresher.take() {
            let _ = thread.join();
        }
        // Only our own: a lease another node took over (ours having gone stale) is theirs.
        if read(&self.path)
            .ok()
            .flatten()
            .is_some_and(|r| r.same_holder(&self.record))
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Rewrites `mine`'s heartbeat, unless the lease is no longer `mine` (another node took it
/// over after it went stale): then writing would hide the takeover from both.
fn refresh(path: &Path, mine: &LeaseRecord) -> io::Result<()> {
    match read(path)? {
        Some(on_disk) if on_disk.same_holder(mine) => write(
            path,
            &LeaseRecord {
                heartbeat: unix_now(),
                ..mine.clone()
            },
        ),
        other => Err(io::Error::other(format!(
            "{}: this process's lease was taken over ({}); another node may be writing here",
            path.display(),
            other.map_or("removed".to_string(), |r| format!(
                "now host {} pid {}",
                r.host, r.pid
            ))
        ))),
    }
}

/// The lease at `path`, if there is one.
pub fn read(path: &Path) -> io::Result<Option<LeaseRecord>> {
    let Some(bytes) = fsio::read_if_exists(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a lease ({e}; expected host, pid, started, heartbeat); it is written \
                 atomically, so it was damaged or edited: remove it once no other node runs here",
                path.display()
            ),
        )
    })
}

fn write(path: &Path, record: &LeaseRecord) -> io::Result<()> {
    fsio::write_atomic(path, &serde_json::to_vec(record)?)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// This node's name, as other nodes' leases name theirs.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it when the
    // name fits, and the last byte is kept NUL whatever happens.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether a process with this pid exists on this node (EPERM: it exists, owned by another
/// user).
fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join("lock"), dir.join("lease.json"))
    }

    #[test]
    fn a_fresh_lease_of_another_node_refuses() {
        let tmp = tempfile::tempdir().unwrap();
        let (lock, lease) = paths(tmp.path());
        let theirs = LeaseRecord {
            host: "node-elsewhere-17".into(),
            pid: 4242,
            started: unix_now() - 600.0,
            heartbeat: unix_now() - 5.0,
        };
        write(&lease, &theirs).unwrap();
        let err = lock_with_lease(&lock, &lease).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
        let msg = err.to_string();
        for part in [
            lease.display().to_string(),
            "host node-elsewhere-17".into(),
            "pid 4242".into(),
            "refreshed 5 s ago".into(),
        ] {
            assert!(msg.contains(&part), "{part:?} not in {msg}");
        }
        let left = read(&lease).unwrap().unwrap();
        assert!(left.same_holder(&theirs), "left as it was: {left:?}");
        // The flock was let go with the refusal.
        assert!(fsio::try_lock(&lock).unwrap().is_some());
    }

    #[test]
    fn a_live_process_of_this_node_refuses_a_dead_one_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let (lock, lease) = paths(tmp.path());
        // pid 1 is alive on every Linux node.
        let live = LeaseRecord {
            host: hostname(),
            pid: 1,
            started: unix_now(),
            heartbeat: unix_now(),
        };
        write(&lease, &live).unwrap();
        assert!(lock_with_lease(&lock, &lease).is_err());
        // No pid is ever pid_max or above, so this one is dead. Not a spawned child's pid: a
        // fork copies every open descriptor of this test binary, and while the child execs it
        // holds the flocks of the tests running beside this one (it made
        // `a_fresh_lease_of_another_node_refuses` see its released lock still held).
        let dead_pid: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!pid_alive(dead_pid));
        write(
            &lease,
            &LeaseRecord {
                pid: dead_pid,
                ..live
            },
        )
        .unwrap();
        let held = lock_with_lease(&lock, &lease).unwrap().unwrap();
        assert_eq!(read(&lease).unwrap().unwrap().pid, std::process::id());
        drop(held);
        assert!(!lease.exists(), "released on drop");
    }

    #[test]
    fn a_stale_lease_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let (lock, lease) = paths(tmp.path());
        write(
            &lease,
            &LeaseRecord {
                host: "node-elsewhere-17".into(),
                pid: 4242,
                started: unix_now() - 3600.0,
                heartbeat: unix_now() - LEASE_STALE_SECS - 1.0,
            },
        )
        .unwrap();
        let held = lock_with_lease(&lock, &lease).unwrap().unwrap();
        let now = read(&lease).unwrap().unwrap();
        assert_eq!((now.host, now.pid), (hostname(), std::process::id()));
        // A second taker on this node is held off by the flock (the caller's own message).
        assert!(lock_with_lease(&lock, &lease).unwrap().is_none());
        drop(held);
    }

    #[test]
    fn the_holders_lease_is_refreshed_and_a_takeover_is_noticed() {
        let tmp = tempfile::tempdir().unwrap();
        let (lock, lease) = paths(tmp.path());
        let held = lock_with_lease_every(&lock, &lease, Duration::from_millis(20))
            .unwrap()
            .unwrap();
        let first = read(&lease).unwrap().unwrap();
        let refreshed = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            read(&lease).unwrap().unwrap().heartbeat > first.heartbeat
        });
        assert!(refreshed, "the heartbeat never moved");
        let now = read(&lease).unwrap().unwrap();
        assert!(now.same_holder(&first), "refreshing keeps host, pid, start");
        drop(held);
        assert!(!lease.exists());

        // Another node took it over (this holder's having gone stale): refreshing stops, and
        // dropping leaves theirs. (No refresh falls due in this test: it calls `refresh`.)
        let held = lock_with_lease_every(&lock, &lease, Duration::from_secs(3600))
            .unwrap()
            .unwrap();
        let mine = held.record().clone();
        let theirs = LeaseRecord {
            host: "node-elsewhere-17".into(),
            ..mine.clone()
        };
        refresh(&lease, &mine).unwrap();
        write(&lease, &theirs).unwrap();
        let err = refresh(&lease, &mine).unwrap_err();
        assert!(err.to_string().contains("taken over"), "{err}");
        drop(held);
        let left = read(&lease).unwrap().expect("theirs is kept");
        assert!(left.same_holder(&theirs), "{left:?}");
    }

    #[test]
    fn an_unreadable_lease_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (lock, lease) = paths(tmp.path());
        std::fs::write(&lease, "{\"host\": \"n").unwrap();
        let err = lock_with_lease(&lock, &lease).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("lease.json"), "{err}");
    }
}
