//! `strongroom-platform`: the simulated TEE platform as a daemon of its own, holding the key
//! that signs quotes where the worker host cannot reach it.
//!
//! ```text
//! strongroom-platform --dir DIR --socket PATH --enclave BINARY [--enclave BINARY …]
//! ```
//!
//! Creates (or loads) `DIR/platform.key`, reads and measures each enclave binary once, listens
//! on the Unix socket `PATH`, prints `platform key 0x… listening on PATH` once ready, and serves
//! until killed. It launches those binaries only, from the copies it read.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;

use strongroom_enclave_sim::{Launchable, Platform, serve};

const USAGE: &str = "usage: strongroom-platform --dir DIR --socket PATH --enclave BINARY [--enclave BINARY …]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("strongroom-platform: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let (mut dir, mut socket, mut enclaves) = (None, None, Vec::new());
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().map(PathBuf::from).ok_or_else(|| format!("{arg:?} needs a value; {USAGE}"));
        match arg.to_str() {
            Some("--dir") => dir = Some(value()?),
            Some("--socket") => socket = Some(value()?),
            Some("--enclave") => enclaves.push(value()?),
            _ => return Err(format!("unknown argument {arg:?}; {USAGE}")),
        }
    }
    let (Some(dir), Some(socket)) = (dir, socket) else { return Err(USAGE.into()) };
    if enclaves.is_empty() {
        return Err(format!("no --enclave given: the platform launches only the binaries it is started with; {USAGE}"));
    }
    let platform = Platform::load_or_create(&dir).map_err(|e| e.to_string())?;
    let enclaves =
        enclaves.iter().map(|p| Launchable::load(p)).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    // A socket left by a daemon that died would refuse the bind; nothing else is removed.
    if std::fs::symlink_metadata(&socket).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type())) {
        std::fs::remove_file(&socket).map_err(|e| format!("removing the stale socket {}: {e}", socket.display()))?;
    }
    let listener = UnixListener::bind(&socket).map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    // The daemon's group may connect: a worker host runs as another user in that group, and
    // cannot read the daemon's directory (0700).
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    println!("platform key {} listening on {} (SIMULATED TEE)", platform.address(), socket.display());
    serve(&platform, enclaves, listener).map_err(|e| e.to_string())
}
