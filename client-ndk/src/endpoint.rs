//! Where the service is.
//!
//! On Android the service is a binder service registered with the service manager (the only
//! endpoint there: a socket endpoint fails with `EOPNOTSUPP`). On plain Linux it is either the
//! same on kernel binder (with rsbinder's service manager) or a private `dmaloadd` answering
//! RPC binder on a Unix socket. The choice is made here once, from an explicit endpoint
//! string, the environment, or what the machine offers. How each is reached is in
//! [`crate::binder_stack`].

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use dmaload_abi::{Untrusted, SERVICE_INSTANCE};

/// Environment variable naming the endpoint (same syntax as [`Endpoint::parse`]).
pub const ENV_ENDPOINT: &str = "DMALOAD_ENDPOINT";
/// Environment variable naming the RPC socket path.
pub const ENV_SOCKET: &str = "DMALOAD_SOCKET";

/// A way to reach the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Kernel binder, through the service manager, under this instance name.
    Binder { instance: String },
    /// RPC binder on this Unix socket.
    Socket(PathBuf),
}

impl Endpoint {
    /// Parses `binder`, `binder:<instance>`, `unix:<path>` or an absolute socket path.
    pub fn parse(text: &str) -> Result<Endpoint> {
        let invalid = || {
            Error::os(
                libc::EINVAL,
                format!(
                    "endpoint {text:?} is not valid: use \"binder\", \"binder:<instance>\", \
                     \"unix:<socket path>\" or an absolute socket path"
                ),
            )
        };
        if text == "binder" {
            return Ok(Endpoint::Binder {
                instance: SERVICE_INSTANCE.to_string(),
            });
        }
        if let Some(instance) = text.strip_prefix("binder:") {
            if instance.is_empty() {
                return Err(invalid());
            }
            return Ok(Endpoint::Binder {
                instance: instance.to_string(),
            });
        }
        let path = text.strip_prefix("unix:").unwrap_or(text);
        if path.starts_with('/') {
            return Ok(Endpoint::Socket(PathBuf::from(path)));
        }
        Err(invalid())
    }

    /// The endpoint to use when the caller names none: `$DMALOAD_ENDPOINT`, then
    /// `$DMALOAD_SOCKET`, then kernel binder where `/dev/binder` exists, else the default
    /// socket. `binder_available` tells whether kernel binder has the service registered.
    pub fn from_environment(binder_available: impl FnOnce() -> bool) -> Result<Endpoint> {
        if let Some(text) = env_nonempty(ENV_ENDPOINT) {
            return Endpoint::parse(&text);
        }
        if let Some(path) = env_nonempty(ENV_SOCKET) {
            return Ok(Endpoint::Socket(PathBuf::from(path)));
        }
        if cfg!(target_os = "android") || (Path::new("/dev/binder").exists() && binder_available())
        {
            return Ok(Endpoint::Binder {
                instance: SERVICE_INSTANCE.to_string(),
            });
        }
        Ok(Endpoint::Socket(default_socket_path()))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Binder { instance } => write!(f, "binder:{instance}"),
            Endpoint::Socket(path) => write!(f, "unix:{}", Untrusted::path(path)),
        }
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The RPC socket `dmaloadd` listens on by default on Linux (its `--rpc-socket` default).
pub const DEFAULT_SOCKET: &str = "/tmp/dmaload.sock";

/// The RPC socket used when nothing names one: [`DEFAULT_SOCKET`].
pub fn default_socket_path() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_endpoint_form() {
        assert_eq!(
            Endpoint::parse("binder").unwrap(),
            Endpoint::Binder {
                instance: SERVICE_INSTANCE.into()
            }
        );
        assert_eq!(
            Endpoint::parse("binder:x.y/z").unwrap(),
            Endpoint::Binder {
                instance: "x.y/z".into()
            }
        );
        assert_eq!(
            Endpoint::parse("unix:/run/d.sock").unwrap(),
            Endpoint::Socket("/run/d.sock".into())
        );
        assert_eq!(
            Endpoint::parse("/run/d.sock").unwrap(),
            Endpoint::Socket("/run/d.sock".into())
        );
        for bad in [
            "",
            "binder:",
            "unix:relative.sock",
            "tcp:1.2.3.4",
            "relative.sock",
        ] {
            let err = Endpoint::parse(bad).unwrap_err();
            assert_eq!(err.c_code(), -libc::EINVAL, "{bad:?}");
        }
        let e = Endpoint::parse("unix:/a b").unwrap();
        assert_eq!(Endpoint::parse(&e.to_string()).unwrap(), e);
    }

    #[test]
    fn default_socket_is_the_services_default() {
        assert_eq!(default_socket_path(), PathBuf::from("/tmp/dmaload.sock"));
    }
}
