//! `--lm-variant NAME=KEY=VALUE[,KEY=VALUE...]` of `lmc compare`: its
//! syntax, the keys it may set, and how it lands on the LM flags (a price
//! becomes `--lm default.KEY=VALUE`, so every value still goes through the
//! one LM resolution path, `lm::resolve`). `lm=NAME` runs the cell's
//! default LM as the named LM `NAME` of the files (`lms:`).

use super::lm_args::LmArgs;
use crate::lm::resolve::LmSet;

/// One `--lm-variant`: a name and the settings it overrides, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct LmVariant {
    pub name: String,
    pub settings: Vec<(String, String)>,
}

/// The keys a variant may set (the LM settings that change answers, speed
/// or price; concurrency is the run's, shared by every cell).
const VARIANT_KEYS: &[&str] = &[
    "lm",
    "provider",
    "model",
    "base_url",
    "api_key_env",
    "temperature",
    "max_tokens",
    "adapter",
    "timeout",
    "max_retries",
    "price_prompt_per_mtok",
    "price_completion_per_mtok",
];

/// Parse `NAME=KEY=VALUE[,KEY=VALUE...]`. The single place a variant's
/// syntax lives: a variant naming a named LM (`NAME=lm=fast`) would be one
/// more key here.
pub fn parse_variant(s: &str) -> Result<LmVariant, String> {
    let usage = "write NAME=KEY=VALUE[,KEY=VALUE...], e.g. --lm-variant small=model=qwen2.5-7b,temperature=0";
    let Some((name, rest)) = s.split_once('=') else {
        return Err(format!(
            "--lm-variant `{s}` has no settings\n  = help: {usage}"
        ));
    };
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(format!(
            "--lm-variant `{s}`: the name `{name}` must be letters, digits, `-`, `_` or `.`\n  = help: {usage}"
        ));
    }
    let mut settings = Vec::new();
    for part in rest.split(',') {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!(
                "--lm-variant `{s}`: `{part}` is not KEY=VALUE\n  = help: {usage}"
            ));
        };
        let (k, v) = (k.trim().replace('-', "_"), v.trim().to_string());
        if k == "concurrency" {
            return Err(format!(
                "--lm-variant `{s}`: concurrency is shared by all cells\n  = help: set it once with --concurrency N"
            ));
        }
        if !VARIANT_KEYS.contains(&k.as_str()) {
            let hint = crate::diag::did_you_mean(&k, VARIANT_KEYS.iter().copied())
                .map(|m| format!("did you mean `{m}`? "))
                .unwrap_or_default();
            return Err(format!(
                "--lm-variant `{s}`: unknown key `{k}`\n  = help: {hint}keys are {}",
                VARIANT_KEYS.join(", ")
            ));
        }
        settings.push((k, v));
    }
    Ok(LmVariant {
        name: name.to_string(),
        settings,
    })
}

/// The LM flags and file config of one cell: the variant's settings over
/// both. Values the runner gives (URL, key variable) travel as flags so the
/// credential rule sees them as the runner's, not a file's.
pub fn apply_variant(v: &LmVariant, flags: &LmArgs) -> Result<LmArgs, String> {
    let mut a = flags.clone();
    let mut urls = Vec::new();
    let num = |k: &str, val: &str| -> Result<f64, String> {
        val.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| format!("--lm-variant {}: {k}={val} is not a number >= 0", v.name))
    };
    for (k, val) in &v.settings {
        match k.as_str() {
            "provider" => a.provider = Some(val.clone()),
            "model" => a.model = Some(val.clone()),
            "base_url" => urls.push(val.clone()),
            "api_key_env" => a.api_key_env = Some(val.clone()),
            "temperature" => a.temperature = Some(num(k, val)? as f32),
            "max_tokens" => a.max_tokens = Some(num(k, val)? as u32),
            "adapter" => {
                a.adapter = Some(
                    val.parse()
                        .map_err(|e: String| format!("--lm-variant {}: adapter: {e}", v.name))?,
                )
            }
            "timeout" => a.timeout = Some(num(k, val)?),
            "max_retries" => a.max_retries = Some(num(k, val)? as u32),
            "price_prompt_per_mtok" | "price_completion_per_mtok" => {
                num(k, val)?;
                a.lm_overrides.push(format!("default.{k}={val}"));
            }
            // Applied to the resolved set (`use_named`).
            "lm" => {}
            other => return Err(format!("--lm-variant {}: unknown key `{other}`", v.name)),
        }
    }
    if !urls.is_empty() {
        a.base_urls = urls;
    }
    Ok(a)
}

/// The variant's `lm=NAME`: the cell runs the named LM `NAME` (of the
/// files' `lms:` or `--lm NAME.…`) wherever the program uses its default
/// LM; nodes that name their own LM keep it.
pub fn use_named(v: &LmVariant, set: &mut LmSet) -> Result<(), String> {
    let Some((_, name)) = v.settings.iter().rev().find(|(k, _)| k == "lm") else {
        return Ok(());
    };
    set.check_name(name, &format!("--lm-variant {}", v.name))?;
    if let Some(named) = set.named.get(name) {
        set.default = named.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_parse_and_refuse_clearly() {
        let v = parse_variant(
            "cheap=model=m-small,temperature=0.2,base_url=http://a/v1,base_url=http://b/v1",
        )
        .unwrap();
        assert_eq!(v.name, "cheap");
        assert_eq!(v.settings.len(), 4);
        let a = apply_variant(&v, &LmArgs::default()).unwrap();
        assert_eq!(a.model.as_deref(), Some("m-small"));
        assert_eq!(a.base_urls, ["http://a/v1", "http://b/v1"]);
        assert_eq!(a.temperature, Some(0.2));
        let v = parse_variant("p=price_prompt_per_mtok=0.5").unwrap();
        let a = apply_variant(&v, &LmArgs::default()).unwrap();
        assert_eq!(a.lm_overrides, ["default.price_prompt_per_mtok=0.5"]);

        let e = parse_variant("cheap").unwrap_err();
        assert!(e.contains("no settings"), "{e}");
        let e = parse_variant("cheap=modle=x").unwrap_err();
        assert!(e.contains("did you mean `model`"), "{e}");
        let e = parse_variant("cheap=concurrency=4").unwrap_err();
        assert!(e.contains("--concurrency"), "{e}");
        let e = parse_variant("a b=model=x").unwrap_err();
        assert!(e.contains("must be letters"), "{e}");
        let v = parse_variant("t=temperature=hot").unwrap();
        let e = apply_variant(&v, &LmArgs::default()).unwrap_err();
        assert!(e.contains("not a number"), "{e}");
    }
}
