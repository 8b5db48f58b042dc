//! Admin sessions, the password and login throttling: pure state, no HTTP. The web layer
//! (`auth`) maps requests onto it.
//!
//! - The password is stored as an argon2id PHC string in `<data>/ui/admin-password`
//!   (temp file, fsync, rename). No file means "not set yet": the first visit sets it, and
//!   the recovery console resets it by deleting the file.
//! - Sessions are random 256-bit tokens held in memory (a restart logs everyone out), each
//!   with its own CSRF token, an idle timeout and an absolute lifetime; bounded in number.
//! - Failed logins are throttled per client address with an exponential lockout.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MIN_PASSWORD_LEN: usize = 8;
const MAX_PASSWORD_LEN: usize = 256;
pub const SESSION_IDLE: Duration = Duration::from_secs(2 * 3600);
pub const SESSION_MAX: Duration = Duration::from_secs(12 * 3600);
const MAX_SESSIONS: usize = 32;
/// Failures allowed before the lockout starts; each further failure doubles it.
const FREE_FAILURES: u32 = 3;
const MAX_LOCKOUT: Duration = Duration::from_secs(300);
const MAX_TRACKED_CLIENTS: usize = 1024;

/// A random token as 64 hex digits.
pub fn random_token() -> String {
    let b: [u8; 32] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compares without an early exit, so timing does not reveal how much of a token matched.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Too many failures from this address: try again after this long.
    Throttled(Duration),
    WrongPassword,
    NoPassword,
}

#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    created: Instant,
    last_used: Instant,
}

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

pub struct Auth {
    path: PathBuf,
    hash: Mutex<Option<String>>,
    /// Held while the password file is replaced, so two changes at once cannot interleave
    /// their writes (the temp file's name is fixed) or leave memory and disk disagreeing.
    store: Mutex<()>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl Auth {
    /// Loads the password hash from `data_dir/ui/admin-password` if there is one.
    pub fn open(data_dir: &Path) -> Self {
        let path = data_dir.join("ui/admin-password");
        let hash = std::fs::read_to_string(&path)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| PasswordHash::new(s).is_ok());
        Self {
            path,
            hash: Mutex::new(hash),
            store: Mutex::new(()),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn has_password(&self) -> bool {
        self.hash.lock().is_ok_and(|h| h.is_some())
    }

    /// Checks a new password's shape; the message is shown to the owner.
    pub fn check_new_password(pw: &str, again: &str) -> Result<(), String> {
        if pw != again {
            return Err("The two passwords differ.".into());
        }
        if pw.chars().count() < MIN_PASSWORD_LEN {
            return Err(format!("Use at least {MIN_PASSWORD_LEN} characters."));
        }
        if pw.len() > MAX_PASSWORD_LEN {
            return Err(format!("Use at most {MAX_PASSWORD_LEN} bytes."));
        }
        Ok(())
    }

    /// Hashes and stores a new password, and ends every session.
    pub fn set_password(&self, pw: &str) -> std::io::Result<()> {
        self.store_password(pw)?;
        if let Ok(mut s) = self.sessions.lock() {
            s.clear();
        }
        Ok(())
    }

    /// Hashes and stores a new password, and ends every session but `keep` (the one that
    /// made the change). Returns how many sessions were ended.
    pub fn change_password(&self, pw: &str, keep: &str) -> std::io::Result<usize> {
        self.store_password(pw)?;
        Ok(self.end_other_sessions(keep))
    }

    /// Hashes `pw` (argon2id, random salt) and replaces the stored hash: the file
    /// atomically (temp file, fsync, rename, fsync of the directory), then the copy in
    /// memory. Sessions are left alone.
    fn store_password(&self, pw: &str) -> std::io::Result<()> {
        let salt_bytes: [u8; 16] = rand::random();
        let salt = SaltString::encode_b64(&salt_bytes)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let phc = Argon2::default()
            .hash_password(pw.as_bytes(), &salt)
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .to_string();
        let _writing = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        crate::atomic_file::write(dir, &self.path, format!("{phc}\n").as_bytes())?;
        if let Ok(mut h) = self.hash.lock() {
            *h = Some(phc);
        }
        Ok(())
    }

    /// Verifies `pw` for a login from `client`, throttling repeated failures.
    pub fn verify(&self, client: IpAddr, pw: &str, now: Instant) -> Result<(), LoginError> {
        if let Some(wait) = self.locked_for(client, now) {
            return Err(LoginError::Throttled(wait));
        }
        let Some(phc) = self.hash.lock().ok().and_then(|h| h.clone()) else {
            return Err(LoginError::NoPassword);
        };
        let started = Instant::now();
        let ok = PasswordHash::new(&phc)
            .is_ok_and(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok());
        // The lockout runs from the verdict, not from the request: on a slow or busy machine
        // the hash alone can take longer than the first lockout.
        let now = now + started.elapsed();
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            f.remove(&client);
            return Ok(());
        }
        if f.len() >= MAX_TRACKED_CLIENTS && !f.contains_key(&client) {
            // Forget clients no longer locked out before tracking a new one.
            f.retain(|_, v| v.locked_until.is_some_and(|t| t > now));
        }
        let e = f.entry(client).or_default();
        e.count += 1;
        if e.count > FREE_FAILURES {
            let secs = 1u64 << (e.count - FREE_FAILURES).min(16);
            e.locked_until = Some(now + Duration::from_secs(secs).min(MAX_LOCKOUT));
        }
        Err(LoginError::WrongPassword)
    }

    fn locked_for(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let f = self.failures.lock().ok()?;
        let until = f.get(&client)?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// Starts a session; returns (session token, CSRF token).
    pub fn start_session(&self, now: Instant) -> (String, String) {
        let token = random_token();
        let csrf = random_token();
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        s.retain(|_, v| live(v, now));
        if s.len() >= MAX_SESSIONS {
            if let Some(oldest) = s
                .iter()
                .min_by_key(|(_, v)| v.last_used)
                .map(|(k, _)| k.clone())
            {
                s.remove(&oldest);
            }
        }
        s.insert(
            token.clone(),
            Session {
                csrf: csrf.clone(),
                created: now,
                last_used: now,
            },
        );
        (token, csrf)
    }

    /// The CSRF token of a live session (and marks it used), or None.
    pub fn session(&self, token: &str, now: Instant) -> Option<String> {
        let mut s = self.sessions.lock().ok()?;
        let v = s.get_mut(token)?;
        if !live(v, now) {
            s.remove(token);
            return None;
        }
        v.last_used = now;
        Some(v.csrf.clone())
    }

    pub fn end_session(&self, token: &str) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(token);
        }
    }

    /// Ends every session but `keep` (which may not exist); returns how many were ended.
    pub fn end_other_sessions(&self, keep: &str) -> usize {
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let before = s.len();
        s.retain(|k, _| same(k, keep));
        before - s.len()
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_used) < SESSION_IDLE && now.duration_since(s.created) < SESSION_MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gh-auth-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn password_is_hashed_persisted_and_verified() {
        let d = dir("pw");
        let a = Auth::open(&d);
        assert!(!a.has_password());
        let ip: IpAddr = "192.168.1.10".parse().unwrap();
        let now = Instant::now();
        assert_eq!(a.verify(ip, "x", now), Err(LoginError::NoPassword));
        a.set_password("correct horse").unwrap();
        let stored = std::fs::read_to_string(d.join("ui/admin-password")).unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("correct horse"));
        let again = Auth::open(&d);
        assert!(again.has_password());
        assert_eq!(again.verify(ip, "correct horse", now), Ok(()));
        assert_eq!(
            again.verify(ip, "wrong", now),
            Err(LoginError::WrongPassword)
        );
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn new_passwords_are_checked() {
        assert!(Auth::check_new_password("abcdefgh", "abcdefgh").is_ok());
        assert!(Auth::check_new_password("abcdefgh", "abcdefgx").is_err());
        assert!(Auth::check_new_password("short", "short").is_err());
    }

    #[test]
    fn failures_lock_out_one_client_with_growing_delays() {
        let d = dir("rl");
        let a = Auth::open(&d);
        a.set_password("correct horse").unwrap();
        let bad: IpAddr = "192.168.1.66".parse().unwrap();
        let good: IpAddr = "192.168.1.10".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(a.verify(bad, "guess", t0), Err(LoginError::WrongPassword));
        }
        assert_eq!(a.verify(bad, "guess", t0), Err(LoginError::WrongPassword));
        // Locked now, even with the right password.
        assert!(matches!(
            a.verify(bad, "correct horse", t0),
            Err(LoginError::Throttled(_))
        ));
        // Another client is not affected.
        assert_eq!(a.verify(good, "correct horse", t0), Ok(()));
        // Well after the first lockout, however long the hashes above took.
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(a.verify(bad, "guess", t1), Err(LoginError::WrongPassword));
        let Err(LoginError::Throttled(w)) = a.verify(bad, "correct horse", t1) else {
            panic!("not locked")
        };
        assert!(w > Duration::from_secs(2), "lockout did not grow: {w:?}");
        assert_eq!(a.verify(bad, "correct horse", t1 + MAX_LOCKOUT), Ok(()));
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn sessions_expire_and_end() {
        let d = dir("s");
        let a = Auth::open(&d);
        let t0 = Instant::now();
        let (tok, csrf) = a.start_session(t0);
        assert_eq!(a.session(&tok, t0).as_deref(), Some(csrf.as_str()));
        assert!(a.session("nope", t0).is_none());
        assert!(
            a.session(&tok, t0 + SESSION_IDLE).is_none(),
            "idle session lived on"
        );
        let (tok, _) = a.start_session(t0);
        a.end_session(&tok);
        assert!(a.session(&tok, t0).is_none());
        // A password change logs everyone out.
        let (tok, _) = a.start_session(t0);
        a.set_password("another secret").unwrap();
        assert!(a.session(&tok, t0).is_none());
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_change_keeps_only_the_changing_session() {
        let d = dir("chg");
        let a = Auth::open(&d);
        a.set_password("correct horse").unwrap();
        let t0 = Instant::now();
        let (mine, my_csrf) = a.start_session(t0);
        let (other, _) = a.start_session(t0);
        let (third, _) = a.start_session(t0);
        assert_eq!(a.change_password("battery staple", &mine).unwrap(), 2);
        assert_eq!(a.session(&mine, t0).as_deref(), Some(my_csrf.as_str()));
        assert!(a.session(&other, t0).is_none());
        assert!(a.session(&third, t0).is_none());
        let ip: IpAddr = "192.168.1.10".parse().unwrap();
        assert_eq!(a.verify(ip, "battery staple", t0), Ok(()));
        assert_eq!(
            a.verify(ip, "correct horse", t0),
            Err(LoginError::WrongPassword)
        );
        // On disk too, and no temp file left behind.
        assert_eq!(Auth::open(&d).verify(ip, "battery staple", t0), Ok(()));
        let names: Vec<_> = std::fs::read_dir(d.join("ui"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["admin-password"], "{names:?}");
        // Keeping a token that is not a session ends them all.
        a.start_session(t0);
        assert_eq!(a.end_other_sessions("nope"), 2);
        assert!(a.session(&mine, t0).is_none());
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn token_compare() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        assert_eq!(random_token().len(), 64);
        assert_ne!(random_token(), random_token());
    }
}
