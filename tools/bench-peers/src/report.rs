//! Tables of results, ratios, and their markdown rendering.

use std::fmt::Write as _;

/// Which way a column improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// Per second.
    Rate,
    /// Nanoseconds, shown as µs or ms.
    Nanos,
    /// Bytes per second.
    BytesRate,
    /// A multiple of something (disk use against payload).
    Ratio,
    /// A plain count.
    Count,
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub unit: Unit,
}

/// What a row is, for ratios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    Ringlog,
    /// A peer; `eligible` is false when it cannot be the best peer (not durable in a
    /// durable workload).
    Peer {
        eligible: bool,
    },
    /// The disk's limit for this workload.
    Ceiling,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub kind: RowKind,
    /// One value per column, or why there is none.
    pub values: Result<Vec<f64>, String>,
    pub note: String,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub id: String,
    pub title: String,
    pub columns: Vec<Column>,
    /// The column ratios are computed on.
    pub key: usize,
    pub better: Better,
    pub rows: Vec<Row>,
}

/// A target from the issue, checked against a table.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// At least this many times better than the best peer.
    VsBestPeer(f64),
    /// At least this fraction of the ceiling (higher-is-better tables).
    FractionOfCeiling(f64),
    /// At most this multiple of the ceiling (lower-is-better tables: latency).
    MultipleOfCeiling(f64),
    /// At most this many nanoseconds.
    AtMostNanos(f64),
    /// At most this value, in the table's unit.
    AtMost(f64),
}

impl Table {
    pub fn new(
        id: impl Into<String>,
        title: impl Into<String>,
        columns: Vec<Column>,
        key: usize,
        better: Better,
    ) -> Table {
        Table {
            id: id.into(),
            title: title.into(),
            columns,
            key,
            better,
            rows: Vec::new(),
        }
    }

    pub fn push(
        &mut self,
        name: impl Into<String>,
        kind: RowKind,
        values: Result<Vec<f64>, String>,
        note: impl Into<String>,
    ) {
        self.rows.push(Row {
            name: name.into(),
            kind,
            values,
            note: note.into(),
        });
    }

    fn key_of(&self, row: &Row) -> Option<f64> {
        row.values
            .as_ref()
            .ok()
            .map(|v| v[self.key])
            .filter(|v| v.is_finite() && *v > 0.0)
    }

    /// The best eligible peer: its name and key value.
    pub fn best_peer(&self) -> Option<(&str, f64)> {
        self.rows
            .iter()
            .filter(|r| r.kind == RowKind::Peer { eligible: true })
            .filter_map(|r| self.key_of(r).map(|v| (r.name.as_str(), v)))
            .reduce(|a, b| if self.is_better(b.1, a.1) { b } else { a })
    }

    fn ceiling(&self) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.kind == RowKind::Ceiling)
            .and_then(|r| self.key_of(r))
    }

    fn is_better(&self, a: f64, b: f64) -> bool {
        match self.better {
            Better::Higher => a > b,
            Better::Lower => a < b,
        }
    }

    /// How many times better than the best peer (> 1 is better).
    pub fn vs_best(&self, value: f64) -> Option<f64> {
        let (_, best) = self.best_peer()?;
        Some(match self.better {
            Better::Higher => value / best,
            Better::Lower => best / value,
        })
    }

    /// Value divided by the ceiling's.
    pub fn vs_ceiling(&self, value: f64) -> Option<f64> {
        self.ceiling().map(|c| value / c)
    }

    pub fn ringlog_rows(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.kind == RowKind::Ringlog)
    }

    pub fn render(&self, out: &mut String) {
        let key_name = self.columns[self.key].name;
        let has_ceiling = self.ceiling().is_some();
        let _ = writeln!(out, "### {}: {}\n", self.id, self.title);
        let mut header = String::from("| log |");
        let mut rule = String::from("|---|");
        for column in &self.columns {
            let _ = write!(header, " {} |", column.name);
            rule.push_str("---:|");
        }
        let _ = write!(header, " vs best peer ({key_name}) |");
        rule.push_str("---:|");
        if has_ceiling {
            let _ = write!(header, " ÷ ceiling ({key_name}) |");
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{header} notes |");
        let _ = writeln!(out, "{rule}---|");
        for row in &self.rows {
            let name = match row.kind {
                RowKind::Ringlog => format!("**{}**", row.name),
                RowKind::Peer { eligible: false } => format!("{} †", row.name),
                _ => row.name.clone(),
            };
            let _ = write!(out, "| {name} |");
            let mut ratios = Vec::new();
            match &row.values {
                Ok(values) => {
                    for (column, value) in self.columns.iter().zip(values) {
                        let _ = write!(out, " {} |", format_value(*value, column.unit));
                    }
                    let key = values[self.key];
                    let is_ceiling = row.kind == RowKind::Ceiling;
                    let ratio = |r: Option<f64>| {
                        r.filter(|_| !is_ceiling)
                            .map(format_ratio)
                            .unwrap_or_default()
                    };
                    ratios.push(ratio(self.vs_best(key)));
                    if has_ceiling {
                        ratios.push(ratio(self.vs_ceiling(key)));
                    }
                }
                Err(_) => {
                    for _ in &self.columns {
                        out.push_str(" – |");
                    }
                    ratios.push(String::new());
                    if has_ceiling {
                        ratios.push(String::new());
                    }
                }
            }
            for ratio in ratios {
                let _ = write!(out, " {ratio} |");
            }
            let note = match &row.values {
                Ok(_) => row.note.clone(),
                Err(why) => {
                    let why = why.replace('|', "/").replace('\n', " ");
                    if row.note.is_empty() {
                        format!("**failed**: {why}")
                    } else {
                        format!("{}; **failed**: {why}", row.note)
                    }
                }
            };
            let _ = writeln!(out, " {note} |");
        }
        out.push('\n');
    }
}

pub fn format_ratio(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.0}×")
    } else if ratio >= 0.1 {
        format!("{ratio:.2}×")
    } else {
        // Two significant digits, however small.
        let decimals = (-ratio.log10().floor()) as usize + 1;
        format!("{ratio:.decimals$}×")
    }
}

pub fn format_value(value: f64, unit: Unit) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    match unit {
        Unit::Rate => format_si(value, "/s"),
        Unit::BytesRate => format_bytes(value) + "/s",
        Unit::Nanos => format_nanos(value),
        Unit::Ratio => format!("{value:.3}×"),
        Unit::Count => format!("{value:.0}"),
    }
}

fn format_si(value: f64, suffix: &str) -> String {
    if value >= 1e6 {
        format!("{:.2} M{suffix}", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1} k{suffix}", value / 1e3)
    } else {
        format!("{value:.0} {suffix}")
    }
}

pub fn format_bytes(value: f64) -> String {
    if value >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", value / (1u64 << 30) as f64)
    } else if value >= (1 << 20) as f64 {
        format!("{:.0} MiB", value / (1 << 20) as f64)
    } else if value >= 1024.0 {
        format!("{:.0} KiB", value / 1024.0)
    } else {
        format!("{value:.0} B")
    }
}

pub fn format_nanos(nanos: f64) -> String {
    if nanos >= 1e9 {
        format!("{:.2} s", nanos / 1e9)
    } else if nanos >= 1e6 {
        format!("{:.2} ms", nanos / 1e6)
    } else if nanos >= 1e3 {
        format!("{:.0} µs", nanos / 1e3)
    } else {
        format!("{nanos:.0} ns")
    }
}

/// One line per ringlog row: its key value, the best peer, the ratios and the targets.
pub fn render_summary(tables: &[(Table, Vec<Target>)], out: &mut String) {
    let _ = writeln!(out, "### Summary: ringlog against the issue's targets\n");
    let _ = writeln!(
        out,
        "| workload | ringlog | best peer | vs best peer | ÷ ceiling | target | met |"
    );
    let _ = writeln!(out, "|---|---:|---|---:|---:|---|:---:|");
    for (table, targets) in tables {
        let unit = table.columns[table.key].unit;
        let best = table
            .best_peer()
            .map(|(name, v)| format!("{name}: {}", format_value(v, unit)))
            .unwrap_or_else(|| "–".into());
        for row in table.ringlog_rows() {
            let label = if table.ringlog_rows().count() > 1 {
                format!("{} ({})", table.id, row.name)
            } else {
                table.id.clone()
            };
            let Ok(values) = &row.values else {
                let _ = writeln!(out, "| {label} | failed | {best} | | | | ✗ |");
                continue;
            };
            let value = values[table.key];
            let vs_best = table.vs_best(value);
            let vs_ceiling = table.vs_ceiling(value);
            let mut wanted = Vec::new();
            let mut met = true;
            for target in targets {
                let (text, ok) = match *target {
                    Target::VsBestPeer(x) => {
                        (format!("≥ {x}× best peer"), vs_best.is_some_and(|r| r >= x))
                    }
                    Target::FractionOfCeiling(x) => (
                        format!("≥ {x}× ceiling"),
                        vs_ceiling.is_some_and(|r| r >= x),
                    ),
                    Target::MultipleOfCeiling(x) => (
                        format!("≤ {x}× ceiling"),
                        vs_ceiling.is_some_and(|r| r <= x),
                    ),
                    Target::AtMostNanos(x) => (format!("≤ {}", format_nanos(x)), value <= x),
                    Target::AtMost(x) => (format!("≤ {}", format_value(x, unit)), value <= x),
                };
                wanted.push(text);
                met &= ok;
            }
            let _ = writeln!(
                out,
                "| {label} | {} | {best} | {} | {} | {} | {} |",
                format_value(value, unit),
                vs_best.map(format_ratio).unwrap_or_default(),
                vs_ceiling.map(format_ratio).unwrap_or_default(),
                wanted.join(", "),
                if targets.is_empty() {
                    ""
                } else if met {
                    "✓"
                } else {
                    "✗"
                },
            );
        }
    }
    out.push('\n');
}
