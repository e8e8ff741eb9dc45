//! How a failed command reports itself: the message on stderr and, with `--json`, one JSON
//! object on stdout, `{"error": {"code": N, "name": "...", "message": "..."}}`. `code` is the C
//! API's number: a positive stable service code (`name` as in docs/DESIGN.md, e.g. `BAD_FD`)
//! or a negative errno (`name` the errno's, e.g. `ENOENT`).

use serde_json::json;

/// The code and name of a failure, from the first error in its chain that has one.
pub fn classify(err: &anyhow::Error) -> (i32, String) {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<dmaload::Error>() {
            let name = match e {
                dmaload::Error::Service { code, .. } => code.name().to_string(),
                dmaload::Error::Os { errno, .. } => errno_name(*errno),
            };
            return (e.c_code(), name);
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            return (-errno, errno_name(errno));
        }
    }
    // Everything else is a command line the CLI could not use.
    (-libc::EINVAL, errno_name(libc::EINVAL))
}

/// The failure as the one JSON object `--json` prints.
pub fn to_json(err: &anyhow::Error) -> serde_json::Value {
    let (code, name) = classify(err);
    json!({ "error": { "code": code, "name": name, "message": format!("{err:#}") } })
}

/// A command line that does not parse, as the JSON `--json` prints.
pub fn usage_json(message: &str) -> serde_json::Value {
    json!({ "error": { "code": -libc::EINVAL, "name": errno_name(libc::EINVAL), "message": message } })
}

/// `ENOENT` for 2, ...; `errno N` for the rare ones.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EPIPE => "EPIPE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::EPROTO => "EPROTO",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn service_codes_os_errors_and_usage_errors() {
        let service = anyhow::Error::new(dmaload::Error::service(
            dmaload::ErrorCode::TooManyFiles,
            "65 files",
        ))
        .context("load");
        assert_eq!(classify(&service), (18, "TOO_MANY_FILES".to_string()));
        let value = to_json(&service);
        assert_eq!(value["error"]["code"], 18);
        assert_eq!(value["error"]["name"], "TOO_MANY_FILES");
        assert!(value["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("load: ") && m.contains("65 files")));
        let os: anyhow::Error = dmaload::Error::os(libc::ENOENT, "no socket").into();
        assert_eq!(classify(&os), (-libc::ENOENT, "ENOENT".to_string()));
        let io = std::fs::metadata("/nonexistent/dmaload")
            .context("stat")
            .unwrap_err();
        assert_eq!(classify(&io), (-libc::ENOENT, "ENOENT".to_string()));
        let usage = anyhow::anyhow!("bad segment argument");
        assert_eq!(classify(&usage), (-libc::EINVAL, "EINVAL".to_string()));
        assert_eq!(errno_name(4095), "errno 4095");
    }
}
