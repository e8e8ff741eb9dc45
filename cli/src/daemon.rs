//! Starting a private `dmaloadd` on the RPC socket when none answers (the way adb starts its
//! server), so a plain Linux machine needs no setup before `dmaload load`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use dmaload::{Endpoint, Loader};
use dmaload_abi::Untrusted;

/// How long a freshly started daemon may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Finds `dmaloadd`: next to this executable (cargo puts both in one target directory),
/// then on `$PATH`.
pub fn find_dmaloadd() -> Option<PathBuf> {
    let beside = std::env::current_exe().ok()?.parent()?.join("dmaloadd");
    if beside.is_file() {
        return Some(beside);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("dmaloadd"))
            .find(|p| p.is_file())
    })
}

/// Whether a connect failure means "nobody listens there" (as opposed to a broken service).
pub fn nobody_listens(err: &dmaload::Error) -> bool {
    matches!(err, dmaload::Error::Os { errno, .. }
        if *errno == libc::ENOENT || *errno == libc::ECONNREFUSED)
}

/// Starts `dmaloadd` detached on `socket` and waits until it answers.
pub fn start_private_daemon(dmaloadd: &Path, socket: &Path) -> anyhow::Result<Loader> {
    let dir = socket.parent().context("socket path has no directory")?;
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {}", Untrusted::path(dir)))?;
        // A directory we create is private to this user: nobody else can replace the socket.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .with_context(|| format!("chmod 700 {}", Untrusted::path(dir)))?;
    }
    let beside = |ext: &str| {
        let mut name = socket.as_os_str().to_owned();
        name.push(ext);
        PathBuf::from(name)
    };
    let log_path = beside(".log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", Untrusted::path(&log_path)))?;
    eprintln!(
        "dmaload: no service answers on {}; starting {} (log: {})",
        Untrusted::path(socket),
        Untrusted::path(dmaloadd),
        Untrusted::path(&log_path)
    );
    let mut command = Command::new(dmaloadd);
    command
        .args(daemon_args(socket))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Own process group: the daemon outlives this command and ignores its terminal's ^C.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", Untrusted::path(dmaloadd)))?;
    // Lets scripts stop the daemon they caused to start.
    let pid_path = beside(".pid");
    std::fs::write(&pid_path, format!("{}\n", child.id()))
        .with_context(|| format!("writing {}", Untrusted::path(&pid_path)))?;

    let endpoint = Endpoint::Socket(socket.to_path_buf());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!(
                "{} exited with {status} before answering:\n{log}",
                Untrusted::path(dmaloadd)
            );
        }
        if socket.exists() {
            match Loader::connect(Some(&endpoint)) {
                Ok(loader) => return Ok(loader),
                Err(e) if nobody_listens(&e) => {}
                Err(e) => return Err(e).context("connecting to the private dmaloadd"),
            }
        }
        if start.elapsed() > START_TIMEOUT {
            bail!(
                "{} did not answer on {} within {:?}; see {}",
                Untrusted::path(dmaloadd),
                Untrusted::path(socket),
                START_TIMEOUT,
                Untrusted::path(&log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The daemon's command line for serving RPC binder on `socket`.
fn daemon_args(socket: &Path) -> Vec<std::ffi::OsString> {
    vec!["--rpc-socket".into(), socket.as_os_str().to_owned()]
}
