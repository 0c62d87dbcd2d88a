//! PostgreSQL: which server (`target`), a consistent snapshot with row counts (`snapshot`), the streamed
//! `pg_dump` (`dump`), and the restore side: the dump's table of contents (`dump_toc`), the streamed
//! parallel load (`stream_load`) with the indexes it builds while loading (`early_post_data`), one streamed `pg_restore`, database create/rename/empty and
//! row-count checks (`restore`), and clean mode's schemas set aside while it loads (`set_aside`).

pub mod database_state;
pub mod dump;
pub mod dump_toc;
pub(crate) mod early_post_data;
pub mod globals;
pub mod restore;
pub mod scram;
pub mod set_aside;
pub mod snapshot;
pub mod stream_load;
pub mod target;
pub mod version;

pub use target::PgTarget;

/// Reads a child's stderr to the end (so the child never blocks on a full pipe) and keeps the last
/// `keep` bytes, for the error message.
fn stderr_tail(mut r: impl std::io::Read, keep: usize) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > keep * 2 {
            tail.drain(..tail.len() - keep);
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
    }
    String::from_utf8_lossy(&tail).into_owned()
}

/// A PostgreSQL client message line with any row contents taken out, for errors, logs and Slack.
/// `DETAIL` lines (`Key (id)=(42) already exists`, a failing row) and the values `CONTEXT` quotes for a
/// `COPY` line are withheld; the step, the object and the line number stay. `None`: drop the line (a
/// `COPY` data line echoed back).
pub fn without_row_data(line: &str) -> Option<String> {
    let body = line.trim_start();
    let after = |tag: &str| body.find(tag).map(|i| i + tag.len());
    if let Some(i) = after("DETAIL:") {
        return Some(format!(
            "{}DETAIL: (row values withheld)",
            &body[..i - "DETAIL:".len()]
        ));
    }
    if let Some(i) = after("CONTEXT:") {
        // `COPY customers, line 3, column name: "the value"` keeps everything before the quoted value.
        let context = &body[i..];
        let kept = match context.find(": \"").or_else(|| context.find('"')) {
            Some(q) => format!("{}: (value withheld)", &context[..q]),
            None => context.to_owned(),
        };
        return Some(format!("{}{kept}", &body[..i]));
    }
    if let Some(i) = after("Command was:") {
        let command = body[i..].trim_start();
        let verb = command.split_whitespace().next().unwrap_or_default();
        if verb.eq_ignore_ascii_case("INSERT") {
            return Some(format!("{} INSERT (values withheld)", &body[..i]));
        }
        return Some(line.to_owned());
    }
    if body.contains('\t') {
        return None;
    }
    Some(line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::without_row_data;

    #[test]
    fn row_values_in_postgres_messages_are_withheld_and_the_object_stays() {
        assert_eq!(
            without_row_data("DETAIL:  Key (email)=(alice@example.com) already exists.").unwrap(),
            "DETAIL: (row values withheld)"
        );
        let c = without_row_data(
            r#"CONTEXT:  COPY customers, line 3, column email: "alice@example.com""#,
        )
        .unwrap();
        assert_eq!(
            c,
            "CONTEXT:  COPY customers, line 3, column email: (value withheld)"
        );
        assert_eq!(
            without_row_data("CONTEXT:  COPY customers, line 3").unwrap(),
            "CONTEXT:  COPY customers, line 3"
        );
        assert_eq!(
            without_row_data("Command was: INSERT INTO public.t VALUES (1, 'secret');").unwrap(),
            "Command was: INSERT (values withheld)"
        );
        assert_eq!(without_row_data("42\tsecret row\t2026-01-01"), None);
        let keep = "pg_restore: error: could not execute query: ERROR:  duplicate key value violates unique constraint \"customers_pkey\"";
        assert_eq!(without_row_data(keep).unwrap(), keep);
    }
}
