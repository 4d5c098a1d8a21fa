//! Messages to people (email verification, invitations), behind
//! [`Notifier`]. Two deliveries exist: the log (the default, for a laptop:
//! the message, link included, is one log line) and an outbox folder
//! (`--outbox DIR`: one JSON file per message, for a mail relay or a test to
//! pick up). A mail-sending notifier plugs in behind the same trait.

use std::path::PathBuf;

use serde::Serialize;

/// One message.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Message {
    /// Recipient address.
    pub to: String,
    /// `verify-email` or `invitation`.
    pub kind: &'static str,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// The link the person follows.
    pub link: String,
    /// The token the link carries, for clients that take it directly.
    pub token: String,
}

/// Delivers messages.
pub trait Notifier: Send + Sync + 'static {
    /// Delivers `message`; failures are logged by the caller, never fatal.
    fn send(&self, message: &Message) -> Result<(), String>;
}

/// Writes each message to the log.
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn send(&self, message: &Message) -> Result<(), String> {
        tracing::info!(
            to = %message.to,
            kind = message.kind,
            link = %message.link,
            "Notification (log delivery; configure --outbox for a mail relay)"
        );
        Ok(())
    }
}

/// Writes each message as a JSON file into a folder.
pub struct OutboxNotifier {
    dir: PathBuf,
}

impl OutboxNotifier {
    /// An outbox in `dir` (created if missing).
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }
}

impl Notifier for OutboxNotifier {
    fn send(&self, message: &Message) -> Result<(), String> {
        let name = format!(
            "{}-{}-{}.json",
            crate::auth::now_ms(),
            message.kind,
            &crate::auth::random_id()[..8]
        );
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let json = serde_json::to_vec_pretty(message).map_err(|e| e.to_string())?;
        std::fs::write(&temporary, json).map_err(|e| e.to_string())?;
        std::fs::rename(&temporary, self.dir.join(name)).map_err(|e| e.to_string())
    }
}
