//! Panics go to the log (logcat on Android) before the default hook runs, as keystore2 does:
//! Soong builds dmaloadd with `-C panic=abort` and init sends its stderr nowhere, so without
//! this a crash would leave no word of why.

use std::any::Any;
use std::panic::Location;

/// Longest panic message logged: it may quote what a caller sent.
const MAX_MESSAGE: usize = 1024;

/// Logs every panic with its thread, place and message, then runs the hook installed before.
pub fn log_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        log::error!("{}", describe(info.payload(), info.location()));
        default(info);
    }));
}

/// `panic in thread 'NAME' at FILE:LINE:COLUMN: MESSAGE`, the message bounded and escaped.
pub fn describe(payload: &(dyn Any + Send), location: Option<&Location<'_>>) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    let mut shown: String = message
        .chars()
        .take(MAX_MESSAGE)
        .flat_map(char::escape_debug)
        .collect();
    if message.chars().nth(MAX_MESSAGE).is_some() {
        shown.push_str("...");
    }
    let thread = std::thread::current();
    let at = location.map_or_else(
        || "an unknown place".to_string(),
        |l| format!("{}:{}:{}", l.file(), l.line(), l.column()),
    );
    format!(
        "panic in thread '{}' at {at}: {shown}",
        thread.name().unwrap_or("unnamed")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_placed_bounded_and_escaped() {
        let here = Location::caller();
        let text = describe(&"bad\nline", Some(here));
        assert!(
            text.contains(&format!("{}:{}", file!(), here.line())),
            "{text}"
        );
        assert!(text.ends_with(": bad\\nline"), "{text}");
        let long = describe(&"x".repeat(5000), None);
        assert!(long.len() < 1200 && long.ends_with("..."), "{}", long.len());
        assert!(describe(&42u8, None).contains("(no message)"));
    }
}
