//! Writes one archive to two stores at once: the primary (the backup volume) must succeed; the
//! secondary (the off-site copy) may fail without losing the primary, and its failure is reported.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use tracing::error;

use super::ArchiveSink;
use crate::archive::Sidecar;
use crate::error::Result;

/// Where the secondary's failure is recorded, for the caller to report once the primary is safe.
pub type SecondaryFailure = Arc<Mutex<Option<String>>>;

pub struct TeeSink {
    primary: Box<dyn ArchiveSink>,
    secondary: Option<Box<dyn ArchiveSink>>,
    failure: SecondaryFailure,
}

impl TeeSink {
    pub fn new(
        primary: Box<dyn ArchiveSink>,
        secondary: Box<dyn ArchiveSink>,
    ) -> (Self, SecondaryFailure) {
        let failure = SecondaryFailure::default();
        (
            TeeSink {
                primary,
                secondary: Some(secondary),
                failure: failure.clone(),
            },
            failure,
        )
    }

    fn fail_secondary(&mut self, why: String) {
        error!(error = %why, "off-site copy failed; the local backup continues");
        // Dropping the sink aborts its upload.
        self.secondary = None;
        self.failure
            .lock()
            .expect("failure lock")
            .get_or_insert(why);
    }
}

impl Write for TeeSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.primary.write_all(buf)?;
        if let Some(s) = self.secondary.as_mut()
            && let Err(e) = s.write_all(buf)
        {
            self.fail_secondary(e.to_string());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.primary.flush()
    }
}

impl ArchiveSink for TeeSink {
    fn commit(mut self: Box<Self>, sidecar: &Sidecar) -> Result<()> {
        let primary = std::mem::replace(&mut self.primary, Box::new(NullSink));
        primary.commit(sidecar)?;
        if let Some(s) = self.secondary.take()
            && let Err(e) = s.commit(sidecar)
        {
            self.fail_secondary(e.to_string());
        }
        Ok(())
    }
}

struct NullSink;

impl Write for NullSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ArchiveSink for NullSink {
    fn commit(self: Box<Self>, _: &Sidecar) -> Result<()> {
        Ok(())
    }
}
