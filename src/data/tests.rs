//! Unit tests of the pure parts of dataset loading: value conversion,
//! splits and selection. File-level behaviour is in tests/it/data.rs.

use serde_json::{json, Map, Value};

use super::select::select;
use super::value::convert;
use super::*;

fn ty(s: &str) -> FieldType {
    crate::program::shorthand::parse_type(s).expect("type")
}

fn text(t: &str, s: &str) -> Result<Value, String> {
    convert(&ty(t), Cell::Text(s.into()), false)
}

#[test]
fn text_cells_convert_by_type() {
    assert_eq!(text("int", " 42 ").unwrap(), json!(42));
    assert_eq!(text("int", "1,234").unwrap(), json!(1234));
    assert_eq!(text("float", "0.25").unwrap(), json!(0.25));
    assert_eq!(text("bool", "Yes").unwrap(), json!(true));
    assert_eq!(
        text("enum[positive, negative]", "Positive").unwrap(),
        json!("positive")
    );
    assert_eq!(text("list[int]", "[1, 2]").unwrap(), json!([1, 2]));
    assert_eq!(text("optional[int]", "").unwrap(), Value::Null);
    assert_eq!(text("json", r#"{"a": 1}"#).unwrap(), json!({"a": 1}));
    assert_eq!(
        text("str", " keep spaces ").unwrap(),
        json!(" keep spaces ")
    );
}

#[test]
fn bad_text_cells_say_why() {
    assert_eq!(
        text("enum[positive, negative]", "maybe").unwrap_err(),
        r#""maybe" is not one of positive, negative"#
    );
    assert!(text("int", "4.5").unwrap_err().contains("not an integer"));
    assert!(text("int", "").unwrap_err().contains("empty"));
    assert!(text("bool", "perhaps")
        .unwrap_err()
        .contains("not a boolean"));
    assert!(text("list[str]", "a, b")
        .unwrap_err()
        .contains("not valid JSON"));
    assert!(text("list[int]", r#"[1, "x"]"#)
        .unwrap_err()
        .contains("item 2"));
    assert!(text("float", "NaN").is_err());
}

#[test]
fn json_cells_coerce_only_unambiguous_values() {
    let j = |t: &str, v: Value, expected: bool| convert(&ty(t), Cell::Json(v), expected);
    assert_eq!(j("int", json!("18"), false).unwrap(), json!(18));
    assert_eq!(j("int", json!(3.0), false).unwrap(), json!(3));
    assert!(j("int", json!(3.5), false).is_err());
    assert_eq!(j("str", json!(7), false).unwrap(), json!("7"));
    assert!(j("str", json!({"a": 1}), false).is_err());
    assert!(j("str", Value::Null, false).unwrap_err().contains("null"));
    // On the expected side a list is a list of acceptable answers...
    assert_eq!(
        j("str", json!(["a", "b"]), true).unwrap(),
        json!(["a", "b"])
    );
    assert!(j("str", json!(["a", "b"]), false).is_err());
    assert!(j("enum[x, y]", json!(["x", "z"]), true)
        .unwrap_err()
        .contains("answer 2"));
    // ...but for a list field it is the value itself.
    assert_eq!(j("list[str]", json!(["a"]), true).unwrap(), json!(["a"]));
}

#[test]
fn splits_parse() {
    assert_eq!(
        parse_split("train:0.8").unwrap(),
        Split {
            part: SplitPart::Train,
            fraction: 0.8
        }
    );
    assert_eq!(parse_split("dev:0.25").unwrap().part, SplitPart::Dev);
    for bad in [
        "train", "train:1", "train:0", "eval:0.5", "train:x", "dev:-0.1",
    ] {
        assert!(parse_split(bad).is_err(), "{bad}");
    }
}

fn rows(n: usize) -> Vec<Example> {
    (1..=n)
        .map(|row| Example {
            index: 0,
            row,
            inputs: Map::new(),
            expected: Map::new(),
            extra: Map::new(),
        })
        .collect()
}

fn row_numbers(v: &[Example]) -> Vec<usize> {
    v.iter().map(|e| e.row).collect()
}

#[test]
fn split_parts_partition_the_rows() {
    let opts = |part| LoadOptions {
        split: Some(Split {
            part,
            fraction: 0.7,
        }),
        seed: 9,
        ..Default::default()
    };
    let train = row_numbers(&select(rows(50), &opts(SplitPart::Train)));
    let dev = row_numbers(&select(rows(50), &opts(SplitPart::Dev)));
    assert_eq!(train.len(), 35);
    assert_eq!(dev.len(), 15);
    let mut all: Vec<usize> = train.iter().chain(&dev).copied().collect();
    all.sort();
    assert_eq!(all, (1..=50).collect::<Vec<_>>());
    // File order is kept within a part, and the shuffle is not the identity.
    assert!(train.windows(2).all(|w| w[0] < w[1]));
    assert_ne!(train, (1..=35).collect::<Vec<_>>());
}

#[test]
fn sample_is_seeded_and_limit_applies_last() {
    let o = |seed, sample, limit| LoadOptions {
        seed,
        sample,
        limit,
        ..Default::default()
    };
    let a = row_numbers(&select(rows(100), &o(1, Some(10), None)));
    let b = row_numbers(&select(rows(100), &o(1, Some(10), None)));
    let c = row_numbers(&select(rows(100), &o(2, Some(10), None)));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), 10);
    let limited = row_numbers(&select(rows(100), &o(1, Some(10), Some(3))));
    assert_eq!(limited, a[..3].to_vec());
    assert_eq!(select(rows(5), &o(1, Some(10), None)).len(), 5);
}
