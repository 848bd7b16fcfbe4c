//! Typed optimizer settings: one declaration per optimizer gives the serde
//! struct, its defaults, its range checks and the documentation that
//! `lmc compile --list`, the docs test and the lineage read.
//!
//! Settings arrive as a JSON object (from `--opt key=value`, where a value
//! is read as JSON when it parses and as a string otherwise). They are
//! deserialized once, through serde, into the optimizer's settings type:
//! unknown keys are refused with a did-you-mean, a value of the wrong type
//! names the key and the expected form, and out-of-range values are refused
//! the same way. The lineage records the typed settings serialized back,
//! defaults included, so what ran is what is written.
//!
//! Declare a settings type with [`crate::optimizer_settings!`]; each field
//! is `/// help` then `name: Type = default` with optional `min`/`max`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::OptimizeError;

/// One setting as documented: key, expected form, default and help text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingDoc {
    pub key: &'static str,
    /// The expected form, e.g. `an integer >= 2`, `a number or null`.
    pub expected: String,
    pub default: Value,
    pub help: String,
}

/// A settings type declared with [`crate::optimizer_settings!`].
pub trait SettingsType:
    Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static
{
    fn docs() -> Vec<SettingDoc>;
    /// The first out-of-range field, as (key, expected form).
    fn out_of_range(&self) -> Option<(&'static str, String)>;
}

/// How a setting's Rust type reads to a user, and its numeric value for
/// range checks.
pub trait SettingKind {
    fn expected(min: Option<f64>, max: Option<f64>) -> String;
    fn number(&self) -> Option<f64> {
        None
    }
}

fn bounds(what: &str, min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(lo), Some(hi)) => format!("{what} from {lo} to {hi}"),
        (Some(lo), None) => format!("{what} >= {lo}"),
        (None, Some(hi)) => format!("{what} <= {hi}"),
        (None, None) => what.to_string(),
    }
}

impl SettingKind for usize {
    fn expected(min: Option<f64>, max: Option<f64>) -> String {
        match (min, max) {
            (None, None) => "a non-negative integer".into(),
            _ => bounds("an integer", min, max),
        }
    }
    fn number(&self) -> Option<f64> {
        Some(*self as f64)
    }
}

impl SettingKind for f64 {
    fn expected(min: Option<f64>, max: Option<f64>) -> String {
        bounds("a number", min, max)
    }
    fn number(&self) -> Option<f64> {
        Some(*self)
    }
}

impl SettingKind for bool {
    fn expected(_: Option<f64>, _: Option<f64>) -> String {
        "true or false".into()
    }
}

impl<T: SettingKind> SettingKind for Option<T> {
    fn expected(min: Option<f64>, max: Option<f64>) -> String {
        format!("{} or null", T::expected(min, max))
    }
    fn number(&self) -> Option<f64> {
        self.as_ref().and_then(T::number)
    }
}

/// Whether `v` lies in [min, max] (values without a number always do).
pub fn in_range(v: Option<f64>, min: Option<f64>, max: Option<f64>) -> bool {
    match v {
        None => true,
        Some(x) => min.is_none_or(|m| x >= m) && max.is_none_or(|m| x <= m),
    }
}

/// DSPy's `auto` presets (MIPROv2, GEPA), or `none` to use the explicit
/// settings. `null` and `off` read as `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoPreset {
    Light,
    Medium,
    Heavy,
    None,
}

impl<'de> Deserialize<'de> for AutoPreset {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s.as_deref() {
            None | Some("none") | Some("off") => Ok(AutoPreset::None),
            Some("light") => Ok(AutoPreset::Light),
            Some("medium") => Ok(AutoPreset::Medium),
            Some("heavy") => Ok(AutoPreset::Heavy),
            Some(other) => Err(serde::de::Error::custom(format!(
                "unknown preset `{other}`"
            ))),
        }
    }
}

impl SettingKind for AutoPreset {
    fn expected(_: Option<f64>, _: Option<f64>) -> String {
        "light, medium, heavy or none".into()
    }
}

impl AutoPreset {
    /// The preset, or `None` when the explicit settings apply.
    pub fn preset(self) -> Option<super::instruct::mipro::Auto> {
        use super::instruct::mipro::Auto;
        match self {
            AutoPreset::Light => Some(Auto::Light),
            AutoPreset::Medium => Some(Auto::Medium),
            AutoPreset::Heavy => Some(Auto::Heavy),
            AutoPreset::None => None,
        }
    }
}

/// Parse `key=value` pairs into a settings object (`-` in keys reads as `_`).
pub fn parse_pairs(optimizer: &str, pairs: &[String]) -> Result<Map<String, Value>, OptimizeError> {
    let mut out = Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            return Err(OptimizeError::BadSetting {
                optimizer: optimizer.into(),
                key: p.clone(),
                message: "expected KEY=VALUE, e.g. --opt k=4".into(),
            });
        };
        let v = v.trim();
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        out.insert(k.trim().replace('-', "_"), value);
    }
    Ok(out)
}

/// The closest of `candidates` to `name`, as a ` (did you mean ...?)` hint.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let best = candidates
        .into_iter()
        .map(|o| (strsim::jaro_winkler(o, name), o))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((s, o)) if s > 0.8 => format!(" (did you mean `{o}`?)"),
        _ => String::new(),
    }
}

/// Deserialize `raw` into `S`: the one place settings are read.
pub fn from_raw<S: SettingsType>(
    optimizer: &str,
    raw: &Map<String, Value>,
) -> Result<S, OptimizeError> {
    let docs = S::docs();
    for k in raw.keys() {
        if !docs.iter().any(|d| d.key == k) {
            let known: Vec<&str> = docs.iter().map(|d| d.key).collect();
            return Err(OptimizeError::UnknownSetting {
                optimizer: optimizer.into(),
                key: k.clone(),
                hint: did_you_mean(k, known.iter().copied()),
                known: if known.is_empty() {
                    "(none)".into()
                } else {
                    known.join(", ")
                },
            });
        }
    }
    let value = Value::Object(raw.clone());
    let parsed: Result<S, _> = serde_path_to_error::deserialize(&value);
    let settings = parsed.map_err(|e| {
        let key = e.path().to_string();
        let expected = docs
            .iter()
            .find(|d| d.key == key)
            .map(|d| d.expected.clone())
            .unwrap_or_else(|| e.inner().to_string());
        let got = raw.get(&key).map(Value::to_string).unwrap_or_default();
        OptimizeError::BadSetting {
            optimizer: optimizer.into(),
            message: format!("expected {expected}, got {got}"),
            key,
        }
    })?;
    if let Some((key, expected)) = settings.out_of_range() {
        let got = raw.get(key).map(Value::to_string).unwrap_or_default();
        return Err(OptimizeError::BadSetting {
            optimizer: optimizer.into(),
            key: key.into(),
            message: format!("expected {expected}, got {got}"),
        });
    }
    Ok(settings)
}

/// The settings serialized for the lineage (defaults included).
pub fn to_map<S: Serialize>(s: &S) -> std::collections::BTreeMap<String, Value> {
    match serde_json::to_value(s) {
        Ok(Value::Object(m)) => m.into_iter().collect(),
        _ => Default::default(),
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __opt_bound {
    () => {
        None
    };
    ($e:expr) => {
        Some($e as f64)
    };
}

/// Declare an optimizer's settings type (see the module docs).
#[macro_export]
macro_rules! optimizer_settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $default:expr $(, min $min:expr)? $(, max $max:expr)? ;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )* }
            }
        }

        impl $crate::optimize::settings::SettingsType for $name {
            fn docs() -> Vec<$crate::optimize::settings::SettingDoc> {
                use $crate::optimize::settings::SettingKind;
                let defaults = $crate::optimize::settings::to_map(&Self::default());
                vec![$(
                    $crate::optimize::settings::SettingDoc {
                        key: stringify!($field),
                        expected: <$ty as SettingKind>::expected(
                            $crate::__opt_bound!($($min)?),
                            $crate::__opt_bound!($($max)?),
                        ),
                        default: defaults.get(stringify!($field)).cloned().unwrap_or_default(),
                        help: [$($doc),*].iter().map(|l| l.trim()).collect::<Vec<_>>().join(" "),
                    },
                )*]
            }

            fn out_of_range(&self) -> Option<(&'static str, String)> {
                use $crate::optimize::settings::SettingKind;
                $(
                    let (lo, hi) = ($crate::__opt_bound!($($min)?), $crate::__opt_bound!($($max)?));
                    if !$crate::optimize::settings::in_range(self.$field.number(), lo, hi) {
                        return Some((stringify!($field), <$ty as SettingKind>::expected(lo, hi)));
                    }
                )*
                None
            }
        }
    };
}
