//! A result CSV read by column name. The claims read only what `elab export` wrote, so a
//! missing file or column is an error naming both: the doc would otherwise quote a number the
//! data no longer has.

use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};

/// One job's curves: metric -> (step, value) in step order.
pub type Series<'a> = std::collections::BTreeMap<&'a str, Vec<(f64, f64)>>;

pub struct Table {
    path: PathBuf,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// `dir/file`, e.g. `results/arith` and `thresholds.csv`; a name ending in `.gz` is read
    /// through gzip (the committed curves.csv.gz).
    pub fn read(dir: &Path, file: &str) -> Result<Table> {
        let path = dir.join(file);
        let f = std::fs::File::open(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let input: Box<dyn std::io::Read> = if file.ends_with(".gz") {
            Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)))
        } else {
            Box::new(std::io::BufReader::new(f))
        };
        let mut reader = csv::Reader::from_reader(input);
        let headers = reader
            .headers()
            .with_context(|| format!("{}: no header row", path.display()))?
            .iter()
            .map(str::to_string)
            .collect();
        let rows = reader
            .records()
            .map(|r| r.map(|r| r.iter().map(str::to_string).collect()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("{}: malformed row", path.display()))?;
        Ok(Table {
            path,
            headers,
            rows,
        })
    }

    /// The column names, in file order.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|cells| Row { table: self, cells })
    }

    /// curves.csv's rows of one split, per job: each kept metric's `(step, value)` in the order
    /// written (by step).
    pub fn series<'a>(
        &'a self,
        split: &'a str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<std::collections::BTreeMap<&'a str, Series<'a>>> {
        let mut series: std::collections::BTreeMap<&str, Series> = Default::default();
        for r in self.filter("split", split) {
            let metric = r.get("metric")?;
            if keep(metric) {
                series
                    .entry(r.get("job_id")?)
                    .or_default()
                    .entry(metric)
                    .or_default()
                    .push((r.req("step")?, r.req("value")?));
            }
        }
        Ok(series)
    }

    /// The rows where `column` equals `value`.
    pub fn filter<'a>(&'a self, column: &'a str, value: &'a str) -> impl Iterator<Item = Row<'a>> {
        self.rows()
            .filter(move |r| r.get(column).is_ok_and(|v| v == value))
    }

    /// The one row matching every (column, value) pair: an error when none or several do.
    pub fn one(&self, matches: &[(&str, &str)]) -> Result<Row<'_>> {
        let mut found = self
            .rows()
            .filter(|r| matches.iter().all(|(c, v)| r.get(c).is_ok_and(|x| x == *v)));
        let row = found
            .next()
            .ok_or_else(|| anyhow!("{}: no row with {:?}", self.path.display(), matches))?;
        if found.next().is_some() {
            bail!("{}: several rows with {:?}", self.path.display(), matches);
        }
        Ok(row)
    }

    fn column(&self, name: &str) -> Result<usize> {
        self.headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow!("{}: no column `{name}`", self.path.display()))
    }
}

#[derive(Clone, Copy)]
pub struct Row<'a> {
    table: &'a Table,
    cells: &'a [String],
}

impl<'a> Row<'a> {
    pub fn get(&self, column: &str) -> Result<&'a str> {
        Ok(self.cells[self.table.column(column)?].as_str())
    }

    /// A number, or None for an empty cell (censored, not applicable).
    pub fn num(&self, column: &str) -> Result<Option<f64>> {
        let cell = self.get(column)?;
        if cell.is_empty() {
            return Ok(None);
        }
        cell.parse().map(Some).with_context(|| {
            format!(
                "{}: `{column}` = {cell:?} is not a number",
                self.table.path.display()
            )
        })
    }

    /// A number that must be there.
    pub fn req(&self, column: &str) -> Result<f64> {
        self.num(column)?
            .ok_or_else(|| anyhow!("{}: `{column}` is empty", self.table.path.display()))
    }
}
