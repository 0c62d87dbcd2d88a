//! Which of a dump's post-data entries may be restored while the data section is still loading, and
//! when: an index or a constraint on tables whose rows are all in (`pg_restore -j` schedules them the
//! same way: a post-data entry that depends on a table waits for that table's data, not for all data).
//!
//! Only an `INDEX` or a `CONSTRAINT` (primary key, unique, exclusion, check) whose every dependency is a
//! pre-data entry goes early: it waits for the data of each table it depends on. Anything that depends
//! on another post-data entry (a foreign key needs the index it references, an index attached to a
//! partitioned one, a comment on an index), on a materialized view (whose rows come in post-data) or on
//! a table with no data of its own (a partitioned table), waits for the end of the data, as before. Pure: the streamed load feeds it what has loaded.

use std::collections::{HashMap, HashSet};

use super::dump_toc::{SECTION_POST_DATA, SECTION_PRE_DATA, Toc, sections};

/// The post-data entries not given out yet, each with the `TABLE DATA` entries it waits for.
#[derive(Debug, Default)]
pub(crate) struct EarlyPostData {
    waiting: Vec<(i64, Vec<i64>)>,
    given: HashSet<i64>,
}

impl EarlyPostData {
    pub(crate) fn plan(toc: &Toc) -> EarlyPostData {
        let section = sections(toc);
        let by_id: HashMap<i64, usize> = toc
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.dump_id, i))
            .collect();
        // A table's data entry depends on the table.
        let data_of: HashMap<i64, i64> = toc
            .entries
            .iter()
            .filter(|e| e.desc == "TABLE DATA" && e.has_data)
            .flat_map(|e| e.deps.iter().map(move |t| (*t, e.dump_id)))
            .collect();
        let waiting = toc
            .entries
            .iter()
            .enumerate()
            .filter(|(i, e)| {
                section[*i] == SECTION_POST_DATA
                    && matches!(e.desc.as_str(), "INDEX" | "CONSTRAINT")
            })
            .filter_map(|(_, e)| {
                let mut waits = Vec::new();
                for dep in &e.deps {
                    let &i = by_id.get(dep)?;
                    let d = &toc.entries[i];
                    if section[i] != SECTION_PRE_DATA || d.desc == "MATERIALIZED VIEW" {
                        return None;
                    }
                    match (d.desc.as_str(), data_of.get(dep)) {
                        ("TABLE", Some(data)) => waits.push(*data),
                        // A table without rows of its own (a partitioned one: its partitions are being
                        // loaded and would take locks under it) waits for the end.
                        ("TABLE", None) => return None,
                        _ => {}
                    }
                }
                Some((e.dump_id, waits))
            })
            .collect();
        EarlyPostData {
            waiting,
            given: HashSet::new(),
        }
    }

    /// The entries whose tables are all loaded (`loaded`: the `TABLE DATA` entries done), in the dump's
    /// order, each given out once.
    pub(crate) fn ready(&mut self, loaded: &HashSet<i64>) -> Vec<i64> {
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(_, waits)| waits.iter().all(|d| loaded.contains(d)));
        self.waiting = waiting;
        let ids: Vec<i64> = ready.into_iter().map(|(id, _)| id).collect();
        self.given.extend(&ids);
        ids
    }

    /// Every entry given out so far (the final post-data run leaves them out).
    pub(crate) fn given(&self) -> &HashSet<i64> {
        &self.given
    }
}

#[cfg(test)]
mod tests {
    use super::super::dump_toc::TocEntry;
    use super::*;

    fn entry(id: i64, desc: &str, section: i64, deps: &[i64]) -> TocEntry {
        TocEntry {
            dump_id: id,
            tag: format!("e{id}"),
            desc: desc.into(),
            namespace: "public".into(),
            defn: None,
            copy_stmt: None,
            has_data: desc == "TABLE DATA",
            section,
            deps: deps.to_vec(),
        }
    }

    /// Two tables a (1) and b (2), their data (11, 12), a's primary key (21), an index on both through a
    /// function (22, on b and function 3), a foreign key from b to a (23, on the key 21), a comment on
    /// the index (24, no section of its own: post-data after 23), an index on a materialized view (25),
    /// a primary key on a partitioned table (5, no data of its own: 26).
    fn toc() -> Toc {
        Toc {
            int_size: 4,
            data_start: 0,
            entries: vec![
                entry(1, "TABLE", 2, &[]),
                entry(2, "TABLE", 2, &[]),
                entry(3, "FUNCTION", 2, &[]),
                entry(4, "MATERIALIZED VIEW", 2, &[1]),
                entry(5, "TABLE", 2, &[]),
                entry(11, "TABLE DATA", 3, &[1]),
                entry(12, "TABLE DATA", 3, &[2]),
                entry(21, "CONSTRAINT", 4, &[1]),
                entry(22, "INDEX", 4, &[2, 3]),
                entry(23, "FK CONSTRAINT", 4, &[2, 21]),
                entry(24, "COMMENT", 1, &[22]),
                entry(25, "INDEX", 4, &[4]),
                entry(26, "CONSTRAINT", 4, &[5]),
            ],
        }
    }

    #[test]
    fn an_index_goes_early_once_its_table_is_loaded_and_only_once() {
        let mut early = EarlyPostData::plan(&toc());
        assert!(early.ready(&HashSet::new()).is_empty());
        assert_eq!(early.ready(&HashSet::from([11])), [21]);
        assert!(early.ready(&HashSet::from([11])).is_empty());
        assert_eq!(early.ready(&HashSet::from([11, 12])), [22]);
        assert_eq!(early.given(), &HashSet::from([21, 22]));
    }

    #[test]
    fn foreign_keys_comments_and_indexes_on_views_or_partitioned_tables_wait_for_the_end() {
        let mut early = EarlyPostData::plan(&toc());
        let all = early.ready(&HashSet::from([11, 12]));
        assert_eq!(all, [21, 22]);
        for late in [23, 24, 25, 26] {
            assert!(!early.given().contains(&late), "{late} went early");
        }
    }

    #[test]
    fn a_dependency_missing_from_the_table_of_contents_keeps_the_entry_for_the_end() {
        let mut t = toc();
        t.entries.push(entry(27, "INDEX", 4, &[99]));
        let mut early = EarlyPostData::plan(&t);
        assert!(!early.ready(&HashSet::from([11, 12])).contains(&27));
    }
}
