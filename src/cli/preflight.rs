//! Checks of a program's datasets made before the first LM call, and by
//! `lmc check`: every dataset path exists, every row loads (inputs mapped and
//! typed), and the expected values the metric compares have a column.
//!
//! Without these a dataset that lacks its label column ran every example,
//! spent every LM call, and then scored each one as an error. Problems are
//! located at the program's `datasets:` / `datasets.columns:` entry that
//! caused them (file:line:col), so the fix is one click away; a dataset
//! given on the command line has no position and gets a `--map` hint.

use std::collections::BTreeMap;
use std::path::Path;

use crate::data::{self, DataError, Dataset, LoadOptions};
use crate::diag::Diagnostic;
use crate::metric::Metric;
use crate::program::Program;
use crate::yaml::PosIndex;

/// Which `datasets:` key a path came from (`None`: the command line).
pub type Role = Option<&'static str>;

/// A diagnostic located at `yaml_path` in the program file when the
/// program has a file and that path is written there.
fn located(program: &Program, yaml_path: Option<&str>, message: String) -> Diagnostic {
    let mut d = Diagnostic::error(message);
    if let Some(yp) = yaml_path {
        let idx: Option<PosIndex> = crate::yaml::parse(&program.source)
            .ok()
            .map(|doc| doc.root.index());
        d = d.path(yp).at(idx.and_then(|i| i.locate(yp)));
        if let Some(f) = &program.source_path {
            d = d.file(f);
        }
    }
    d
}

/// `datasets.dev`, `datasets.train`, ...
fn role_path(role: Role) -> Option<String> {
    role.map(|r| format!("datasets.{r}"))
}

/// A dataset path that does not exist (or is not a file).
pub fn missing_path(program: &Program, path: &Path, role: Role) -> Option<Diagnostic> {
    if path.is_file() {
        return None;
    }
    let what = if path.exists() {
        "is not a file"
    } else {
        "does not exist"
    };
    let hint = match role {
        Some(r) => format!(
            "fix `datasets.{r}` (relative paths are relative to the program file), or pass --dataset PATH"
        ),
        None => "check the path (relative paths are relative to the working directory)".into(),
    };
    Some(
        located(
            program,
            role_path(role).as_deref(),
            format!("dataset {} {what}", shown(path)),
        )
        .hint(hint),
    )
}

/// A dataset that could not be loaded (an input column missing, a row that
/// does not type), located at the `datasets:` entry that named it.
pub fn load_failed(program: &Program, err: &DataError, role: Role) -> Diagnostic {
    located(program, role_path(role).as_deref(), err.to_string())
}

/// Every expected value `metric` needs that no column of the dataset at
/// `path` provides, given the column mapping (`column -> field`).
pub fn missing_expected(
    program: &Program,
    metric: &Metric,
    dataset: &Dataset,
    mapping: &BTreeMap<String, String>,
    role: Role,
) -> Vec<Diagnostic> {
    let needs = metric.expected_names(program);
    if needs.is_empty() {
        return Vec::new();
    }
    // The loaded dataset's own column list: the file is not read again.
    let (path, columns) = (dataset.path.as_path(), &dataset.columns);
    // A column reaches the metric under its mapped name, and (when renamed)
    // under its own name too, as an extra value.
    let available: Vec<&str> = columns
        .iter()
        .flat_map(|c| [Some(c.as_str()), mapping.get(c).map(String::as_str)])
        .flatten()
        .collect();
    let mut out = Vec::new();
    for alternatives in needs {
        if alternatives.is_empty() || alternatives.iter().any(|n| available.contains(&n.as_str())) {
            continue;
        }
        out.push(missing_one(
            program,
            metric,
            path,
            columns,
            mapping,
            &alternatives,
            role,
        ));
    }
    out
}

fn missing_one(
    program: &Program,
    metric: &Metric,
    path: &Path,
    columns: &[String],
    mapping: &BTreeMap<String, String>,
    alternatives: &[String],
    role: Role,
) -> Diagnostic {
    let names = alternatives
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(" or ");
    let shown_columns = if columns.is_empty() {
        "(none)".to_string()
    } else {
        columns.join(", ")
    };
    // A mapping that names a column the file lacks is the likely culprit:
    // point at it when the program wrote it.
    let mapped_from = mapping
        .iter()
        .find(|(_, to)| alternatives.contains(to))
        .map(|(from, _)| from.clone());
    let from_program = mapped_from
        .as_ref()
        .filter(|c| program.datasets.columns.contains_key(*c));
    let message = match &mapped_from {
        Some(col) => format!(
            "dataset {} has no column `{col}` (mapped to the expected {names} that metric {metric} compares); its columns are: {shown_columns}",
            shown(path)
        ),
        None => format!(
            "dataset {} has no column for the expected {names} that metric {metric} compares; its columns are: {shown_columns}",
            shown(path)
        ),
    };
    let first = &alternatives[0];
    let hint = format!(
        "map the label column with `datasets.columns: {{COLUMN: {first}}}` or `--map COLUMN={first}`"
    );
    let yaml_path = match from_program {
        Some(col) => Some(format!("datasets.columns.{col}")),
        None => role_path(role),
    };
    located(program, yaml_path.as_deref(), message).hint(hint)
}

/// Before a run: fail (exit 2) when the metric's expected values have no
/// column in `dataset`.
pub fn ensure_expected(
    program: &Program,
    metric: &Metric,
    dataset: &Dataset,
    mapping: &BTreeMap<String, String>,
    role: Role,
) -> anyhow::Result<()> {
    let problems = missing_expected(program, metric, dataset, mapping, role);
    if problems.is_empty() {
        return Ok(());
    }
    Err(super::CliError::Input(crate::diag::Diagnostics(problems).to_string()).into())
}

/// Say on stderr which dataset was taken from the program (`role` set)
/// rather than named on the command line.
pub fn note_implicit(path: &Path, role: Role, what: &str) {
    if let Some(r) = role {
        super::target::note(&format!(
            "{what} {} (the program's `datasets.{r}`)",
            shown(path)
        ));
    }
}

/// `path` relative to the working directory when below it (messages show
/// the path a user can paste).
fn shown(path: &Path) -> String {
    use std::path::Component;
    let cwd = std::env::current_dir().unwrap_or_default();
    let rel = path.strip_prefix(&cwd).unwrap_or(path);
    // `programs/../datasets/x.csv` reads as `datasets/x.csv`: fold `dir/..`
    // lexically (display only; the file is opened by the path as given).
    let mut out = std::path::PathBuf::new();
    for c in rel.components() {
        match c {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.display().to_string()
}

/// `lmc check`: every dataset the program names exists, loads with the
/// program's column mapping, and feeds its metric.
pub fn check_program(program: &Program) -> Vec<Diagnostic> {
    let ds = &program.datasets;
    let mut out = Vec::new();
    let base_dir = program
        .source_path
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    // A metric that cannot be built is reported by `eval`; without one the
    // default metric is what would run.
    let metric = match &program.metric {
        Some(spec) => Metric::from_spec(spec, &base_dir).ok(),
        None => Some(Metric::default_for(program)),
    };
    let roles: [(&'static str, &Option<std::path::PathBuf>); 3] =
        [("train", &ds.train), ("dev", &ds.dev), ("test", &ds.test)];
    for (role, path) in roles {
        let Some(path) = path else { continue };
        if let Some(d) = missing_path(program, path, Some(role)) {
            out.push(d);
            continue;
        }
        let opts = LoadOptions {
            columns: ds.columns.clone(),
            ..Default::default()
        };
        let dataset = match data::load(path, program, &opts) {
            Ok(d) => d,
            Err(e) => {
                out.push(load_failed(program, &e, Some(role)));
                continue;
            }
        };
        if let Some(m) = &metric {
            out.extend(missing_expected(
                program,
                m,
                &dataset,
                &ds.columns,
                Some(role),
            ));
        }
    }
    out
}
