//! Log output: JSON lines on stdout, each one scrubbed before it is
//! written.
//!
//! Callers never log tokens, keys, cookies or query strings; that is a rule
//! of the code, checked by the end-to-end suite. What callers cannot know
//! is whether a path, a subject or an error text carries a card number or
//! an email address. [`scrub`] removes those from every formatted line,
//! whichever module wrote the line.

pub mod config;
pub mod scrub;

use std::io::Write;
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use tracing_subscriber::fmt::MakeWriter;

pub use config::LoggingConfig;
pub use scrub::Scrubber;

/// The scrubber every log line passes through. Starts with the defaults,
/// so lines written before the configuration is read are scrubbed too.
static SCRUBBER: LazyLock<ArcSwap<Scrubber>> =
    LazyLock::new(|| ArcSwap::from_pointee(Scrubber::new(&LoggingConfig::default())));

/// Installs the JSON log subscriber on stdout, filtered by `filter`
/// (`PORTCULLIS_LOG` when absent, else `info`).
pub fn init(filter: Option<String>) {
    let filter = filter
        .or_else(|| std::env::var("PORTCULLIS_LOG").ok())
        .unwrap_or_else(|| "info".to_string());
    let filter = match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("warning: invalid log filter {filter:?} ({error}); logging at info");
            tracing_subscriber::EnvFilter::new("info")
        }
    };

    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(true)
        .with_writer(ScrubbedStdout)
        .init();
}

/// Applies the `logging` section of a newly loaded configuration.
pub fn configure(config: &LoggingConfig) {
    SCRUBBER.store(Arc::new(Scrubber::new(config)));
}

/// Hands the log formatter one [`ScrubbedLine`] per event.
struct ScrubbedStdout;

impl<'a> MakeWriter<'a> for ScrubbedStdout {
    type Writer = ScrubbedLine;

    fn make_writer(&'a self) -> ScrubbedLine {
        ScrubbedLine {
            buffer: Vec::with_capacity(512),
        }
    }
}

/// Collects one formatted event and writes it, scrubbed, when dropped.
/// Writing the whole line at once also keeps lines from different threads
/// apart.
struct ScrubbedLine {
    buffer: Vec<u8>,
}

impl Write for ScrubbedLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbedLine {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }

        let text = String::from_utf8_lossy(&self.buffer);
        let scrubbed = SCRUBBER.load().scrub(&text);

        // A log line that cannot be written has nowhere to be reported.
        let _ = std::io::stdout().lock().write_all(scrubbed.as_bytes());
    }
}
