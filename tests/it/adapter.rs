//! Tests for the adapter area: rendered messages pinned byte for byte against
//! DSPy 3.4.1 (the reference file rendered by DSPy itself, plus goldens for
//! chain of thought, the JSON adapter and every type note), the tolerant
//! parser on the replies DSPy rejects, the never-panics property, the GBNF
//! grammars, and `lmc inspect` through the real binary.

use lmc::adapter::{chat, grammar, json, parse, AdapterKind, Message, Role};
use lmc::overlay::Demo;
use lmc::signature::{Field, FieldType, Signature};
use serde_json::{json, Map, Value};

use crate::support::{lmc, root, run};

fn s() -> FieldType {
    FieldType::String
}
fn enm(vals: &[&str]) -> FieldType {
    FieldType::Enum {
        values: vals.iter().map(|v| v.to_string()).collect(),
    }
}
fn list(t: FieldType) -> FieldType {
    FieldType::List { item: Box::new(t) }
}
fn opt(t: FieldType) -> FieldType {
    FieldType::Optional { inner: Box::new(t) }
}
fn sig(
    instr: Option<&str>,
    inputs: &[(&str, FieldType)],
    outputs: &[(&str, FieldType)],
) -> Signature {
    let mk = |fs: &[(&str, FieldType)]| fs.iter().map(|(n, t)| Field::new(*n, t.clone())).collect();
    Signature {
        instructions: instr.map(str::to_string),
        inputs: mk(inputs),
        outputs: mk(outputs),
    }
}
fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}
fn demo(v: Value) -> Demo {
    Demo {
        fields: obj(v),
        augmented: false,
    }
}

/// The lmc signature equivalent to each reference case's DSPy signature.
fn reference_signature(case: &str, instructions: Option<&str>) -> Signature {
    let sentiment = || enm(&["positive", "negative"]);
    match case {
        "predict_enum_zero_shot" | "predict_with_demos" => sig(
            instructions,
            &[("sentence", s())],
            &[("sentiment", sentiment())],
        ),
        "predict_instructions" => sig(instructions, &[("question", s())], &[("answer", s())]),
        "predict_multi_field_types" => sig(
            instructions,
            &[("question", s()), ("context", list(s()))],
            &[
                ("answer", s()),
                ("confidence", FieldType::Float),
                ("count", FieldType::Int),
                ("is_sure", FieldType::Bool),
            ],
        ),
        "predict_incomplete_demos" => sig(
            instructions,
            &[("question", s())],
            &[("answer", FieldType::Int)],
        ),
        "predict_list_output" => sig(instructions, &[("text", s())], &[("keywords", list(s()))]),
        "predict_optional_output" => sig(
            instructions,
            &[("text", s())],
            &[("year", opt(FieldType::Int))],
        ),
        other => panic!("reference case `{other}` has no lmc equivalent in this test"),
    }
}

#[test]
fn chat_adapter_matches_dspy_reference_byte_for_byte() {
    let text = std::fs::read_to_string(root().join("tests/fixtures/dspy-chatadapter-golden.json"))
        .expect("reference file");
    let reference: Value = serde_json::from_str(&text).expect("reference JSON");
    let cases = reference["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 7);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let sig = reference_signature(name, case["instructions"].as_str());
        let demos: Vec<Demo> = case["demos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| demo(d.clone()))
            .collect();
        let got = chat::render(&sig, &demos, &obj(case["inputs"].clone()));
        let want: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{name}: message count");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.role, w.role, "{name}: role of message {i}");
            assert_eq!(g.content, w.content, "{name}: content of message {i}");
        }
        // The enum dispatch renders the same thing.
        assert_eq!(
            AdapterKind::Chat.render(&sig, &demos, &obj(case["inputs"].clone())),
            want
        );
    }
}

/// DSPy's ChainOfThought prepends `reasoning` with description `${reasoning}`,
/// which the field list renders as nothing; its prefix is not part of the
/// ChatAdapter format. Expected text written from DSPy 3.4.1's rules.
#[test]
fn chain_of_thought_golden() {
    let base = sig(
        Some("Solve the math word problem."),
        &[("question", s())],
        &[("answer", FieldType::Int)],
    );
    let cot = base.with_reasoning();
    let demos = [demo(
        json!({"question": "1 + 1?", "reasoning": "One plus one is two.", "answer": 2}),
    )];
    let msgs = chat::render(&cot, &demos, &obj(json!({"question": "2 * 3?"})));
    let system = "Your input fields are:\n1. `question` (str):\nYour output fields are:\n1. `reasoning` (str): \n2. `answer` (int):\nAll interactions will be structured in the following way, with the appropriate values filled in.\n\n[[ ## question ## ]]\n{question}\n\n[[ ## reasoning ## ]]\n{reasoning}\n\n[[ ## answer ## ]]\n{answer}        # note: the value you produce must be a single int value\n\n[[ ## completed ## ]]\nIn adhering to this structure, your objective is: \n        Solve the math word problem.";
    assert_eq!(msgs[0], Message::new(Role::System, system));
    assert_eq!(
        msgs[1],
        Message::new(Role::User, "[[ ## question ## ]]\n1 + 1?")
    );
    assert_eq!(
        msgs[2],
        Message::new(
            Role::Assistant,
            "[[ ## reasoning ## ]]\nOne plus one is two.\n\n[[ ## answer ## ]]\n2\n\n[[ ## completed ## ]]\n"
        )
    );
    assert_eq!(
        msgs[3].content,
        "[[ ## question ## ]]\n2 * 3?\n\nRespond with the corresponding output fields, starting with the field `[[ ## reasoning ## ]]`, then `[[ ## answer ## ]]` (must be formatted as a valid Python int), and then ending with the marker for `[[ ## completed ## ]]`."
    );
}

/// An incomplete demo that DSPy keeps (an input and an output present, a
/// field missing) comes before complete ones, with DSPy's two sentences.
#[test]
fn incomplete_demo_wording_and_order() {
    let sig = sig(
        None,
        &[("question", s())],
        &[("reasoning", s()), ("answer", s())],
    );
    let demos = [
        demo(json!({"question": "q1", "reasoning": "r1", "answer": "a1"})),
        demo(json!({"question": "q2", "answer": "a2"})),
        demo(json!({"answer": "dropped: no input"})),
    ];
    let msgs = chat::render(&sig, &demos, &obj(json!({"question": "q3"})));
    assert_eq!(msgs.len(), 6);
    assert_eq!(
        msgs[1].content,
        "This is an example of the task, though some input or output fields are not supplied.\n\n[[ ## question ## ]]\nq2"
    );
    assert_eq!(
        msgs[2].content,
        "[[ ## reasoning ## ]]\nNot supplied for this particular example. \n\n[[ ## answer ## ]]\na2\n\n[[ ## completed ## ]]\n"
    );
    assert_eq!(msgs[3].content, "[[ ## question ## ]]\nq1");
}

/// Every type's note and `(type)` name, the description and multi-line
/// instruction rendering, and value formatting (Python `str()`, JSON lists,
/// numbered lists for `str` fields given a list). Expected text follows
/// DSPy 3.4.1's rules (`translate_field_type`, `get_annotation_name`,
/// pydantic schemas with `type` moved first). Deliberate differences, as
/// lmc has no pydantic classes: a `json` field is named `dict[str, Any]`
/// whatever its schema (DSPy prints the model's class name), and its note
/// shows the schema as written, keys sorted as DSPy sorts them. The prefix
/// set on `summary` is not rendered: DSPy's ChatAdapter ignores prefixes.
#[test]
fn every_type_note_golden() {
    let mut sig = sig(
        Some("  Line one.\n\n  Line two."),
        &[("text", s()), ("passages", s())],
        &[
            ("label", enm(&["yes", "it's"])),
            ("n", FieldType::Int),
            ("x", FieldType::Float),
            ("ok", FieldType::Bool),
            ("tags", list(enm(&["a", "b"]))),
            ("maybe", opt(s())),
            ("blob", FieldType::Json { schema: None }),
            (
                "card",
                FieldType::Json {
                    schema: Some(
                        json!({"properties": {"b": {"type": "integer"}, "a": {"type": "string"}}, "type": "object", "required": ["b", "a"]}),
                    ),
                },
            ),
            ("summary", s()),
        ],
    );
    sig.inputs[0].description = Some("the text".into());
    sig.outputs[8].description = Some("one sentence".into());
    sig.outputs[8].prefix = Some("Summary:".into());
    let msgs = chat::render(
        &sig,
        &[],
        &obj(json!({"text": "hello", "passages": ["p1", "p2"]})),
    );
    let want = r#"Your input fields are:
1. `text` (str): the text
2. `passages` (str):
Your output fields are:
1. `label` (Literal['yes', "it's"]): 
2. `n` (int): 
3. `x` (float): 
4. `ok` (bool): 
5. `tags` (list[Literal['a', 'b']]): 
6. `maybe` (Union[str, NoneType]): 
7. `blob` (dict[str, Any]): 
8. `card` (dict[str, Any]): 
9. `summary` (str): one sentence
All interactions will be structured in the following way, with the appropriate values filled in.

[[ ## text ## ]]
{text}

[[ ## passages ## ]]
{passages}

[[ ## label ## ]]
{label}        # note: the value you produce must exactly match (no extra characters) one of: yes; it's

[[ ## n ## ]]
{n}        # note: the value you produce must be a single int value

[[ ## x ## ]]
{x}        # note: the value you produce must be a single float value

[[ ## ok ## ]]
{ok}        # note: the value you produce must be True or False

[[ ## tags ## ]]
{tags}        # note: the value you produce must adhere to the JSON schema: {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}

[[ ## maybe ## ]]
{maybe}        # note: the value you produce must adhere to the JSON schema: {"anyOf": [{"type": "string"}, {"type": "null"}]}

[[ ## blob ## ]]
{blob}        # note: the value you produce must adhere to the JSON schema: {"type": "object", "additionalProperties": true}

[[ ## card ## ]]
{card}        # note: the value you produce must adhere to the JSON schema: {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["b", "a"]}

[[ ## summary ## ]]
{summary}

[[ ## completed ## ]]
In adhering to this structure, your objective is: 
        Line one.
        
        Line two."#;
    assert_eq!(msgs[0].content, want);
    assert_eq!(
        msgs[1].content,
        "[[ ## text ## ]]\nhello\n\n[[ ## passages ## ]]\n[1] «p1»\n[2] «p2»\n\nRespond with the corresponding output fields, starting with the field `[[ ## label ## ]]` (must be formatted as a valid Python Literal['yes', \"it's\"]), then `[[ ## n ## ]]` (must be formatted as a valid Python int), then `[[ ## x ## ]]` (must be formatted as a valid Python float), then `[[ ## ok ## ]]` (must be formatted as a valid Python bool), then `[[ ## tags ## ]]` (must be formatted as a valid Python list[Literal['a', 'b']]), then `[[ ## maybe ## ]]` (must be formatted as a valid Python Union[str, NoneType]), then `[[ ## blob ## ]]` (must be formatted as a valid Python dict[str, Any]), then `[[ ## card ## ]]` (must be formatted as a valid Python dict[str, Any]), then `[[ ## summary ## ]]`, and then ending with the marker for `[[ ## completed ## ]]`."
    );
}

#[test]
fn demo_values_format_as_python_str() {
    let sig = sig(
        None,
        &[("q", s())],
        &[
            ("ok", FieldType::Bool),
            ("x", FieldType::Float),
            ("m", opt(FieldType::Int)),
            ("l", list(s())),
        ],
    );
    let msgs = chat::render(
        &sig,
        &[demo(
            json!({"q": "é", "ok": true, "x": 1.0, "m": 3, "l": ["a", "é"]}),
        )],
        &Map::new(),
    );
    assert_eq!(
        msgs[2].content,
        "[[ ## ok ## ]]\nTrue\n\n[[ ## x ## ]]\n1.0\n\n[[ ## m ## ]]\n3\n\n[[ ## l ## ]]\n[\"a\", \"é\"]\n\n[[ ## completed ## ]]\n"
    );
    // No inputs given: the final turn is only the request.
    assert!(msgs[3]
        .content
        .starts_with("Respond with the corresponding output fields"));
}

/// JSON adapter goldens: DSPy 3.4.1's JSONAdapter output for these
/// signatures (from DSPy's own exact-message tests).
#[test]
fn json_adapter_golden() {
    let sig = sig(
        None,
        &[("question", s())],
        &[("answer", s()), ("confidence", FieldType::Float)],
    );
    let msgs = json::render(
        &sig,
        &[demo(
            json!({"question": "Q1", "answer": "A1", "confidence": 0.9}),
        )],
        &obj(json!({"question": "Q2"})),
    );
    let system = "Your input fields are:\n1. `question` (str):\nYour output fields are:\n1. `answer` (str): \n2. `confidence` (float):\nAll interactions will be structured in the following way, with the appropriate values filled in.\n\nInputs will have the following structure:\n\n[[ ## question ## ]]\n{question}\n\nOutputs will be a JSON object with the following fields.\n\n{\n  \"answer\": \"{answer}\",\n  \"confidence\": \"{confidence}        # note: the value you produce must be a single float value\"\n}\nIn adhering to this structure, your objective is: \n        Given the fields `question`, produce the fields `answer`, `confidence`.";
    assert_eq!(
        msgs,
        vec![
            Message::new(Role::System, system),
            Message::new(Role::User, "[[ ## question ## ]]\nQ1"),
            Message::new(Role::Assistant, "{\n  \"answer\": \"A1\",\n  \"confidence\": 0.9\n}"),
            Message::new(
                Role::User,
                "[[ ## question ## ]]\nQ2\n\nRespond with a JSON object in the following order of fields: `answer`, then `confidence` (must be formatted as a valid Python float)."
            ),
        ]
    );

    let mut sig = sig_described_bool();
    sig.outputs[0].description = Some("String output field".into());
    let msgs = json::render(&sig, &[], &obj(json!({"input1": "Test input"})));
    assert_eq!(
        msgs[0].content,
        "Your input fields are:\n1. `input1` (str):\nYour output fields are:\n1. `output1` (str): String output field\n2. `output2` (bool):\nAll interactions will be structured in the following way, with the appropriate values filled in.\n\nInputs will have the following structure:\n\n[[ ## input1 ## ]]\n{input1}\n\nOutputs will be a JSON object with the following fields.\n\n{\n  \"output1\": \"{output1}\",\n  \"output2\": \"{output2}        # note: the value you produce must be True or False\"\n}\nIn adhering to this structure, your objective is: \n        Given the fields `input1`, produce the fields `output1`, `output2`."
    );
    assert_eq!(
        msgs[1].content,
        "[[ ## input1 ## ]]\nTest input\n\nRespond with a JSON object in the following order of fields: `output1`, then `output2` (must be formatted as a valid Python bool)."
    );
}

fn sig_described_bool() -> Signature {
    sig(
        None,
        &[("input1", s())],
        &[("output1", s()), ("output2", FieldType::Bool)],
    )
}

#[test]
fn json_response_format_is_strict_schema_of_outputs() {
    let sig = sig(
        None,
        &[("q", s())],
        &[
            ("sentiment", enm(&["positive", "negative"])),
            ("score", opt(FieldType::Float)),
        ],
    );
    let rf = AdapterKind::Json
        .response_format(&sig)
        .expect("json adapter asks for a schema");
    assert_eq!(
        rf,
        json!({"type": "json_schema", "json_schema": {"name": "outputs_sentiment_score", "strict": true, "schema": {
            "type": "object",
            "properties": {
                "sentiment": {"type": "string", "enum": ["positive", "negative"]},
                "score": {"anyOf": [{"type": "number"}, {"type": "null"}]}
            },
            "required": ["sentiment", "score"],
            "additionalProperties": false
        }}})
    );
    assert_eq!(AdapterKind::Chat.response_format(&sig), None);

    // OpenAI's strict mode rejects open objects: strict only when every
    // JSON field's schema is closed.
    let strict = |ty: FieldType| {
        let sig = sig_with_output(ty);
        json::response_format(&sig)["json_schema"]["strict"].clone()
    };
    assert_eq!(strict(FieldType::Json { schema: None }), json!(false));
    assert_eq!(
        strict(FieldType::Json {
            schema: Some(json!({"type": "object", "properties": {"a": {"type": "string"}}}))
        }),
        json!(false)
    );
    assert_eq!(
        strict(list(FieldType::Json {
            schema: Some(
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": false})
            )
        })),
        json!(true)
    );
}

fn sig_with_output(ty: FieldType) -> Signature {
    sig(None, &[("q", s())], &[("out", ty)])
}

// ---------------------------------------------------------------- parsing

fn sentiment_sig() -> Signature {
    sig(
        None,
        &[("sentence", s())],
        &[("sentiment", enm(&["positive", "negative"]))],
    )
}

#[test]
fn parses_dspy_failure_cases() {
    let sig = sentiment_sig();
    let ok = |reply: &str| {
        parse::parse_chat(&sig, reply)
            .unwrap_or_else(|e| panic!("reply {reply:?} failed: {e}"))
            .get("sentiment")
            .cloned()
    };
    let pos = Some(json!("positive"));
    // Near-miss markers written by the default embedded model.
    assert_eq!(
        ok("[[ ## sentiment## ]]\npositive\n\n[[ ## completed ## ]]"),
        pos
    );
    assert_eq!(ok("[[## sentiment ##]]\npositive"), pos);
    assert_eq!(ok("[[ ## Sentiment ## ]]\nPositive"), pos);
    assert_eq!(ok("[[ # sentiment # ]] positive"), pos);
    // Code fences around the whole reply or around the value.
    assert_eq!(
        ok("```\n[[ ## sentiment ## ]]\npositive\n[[ ## completed ## ]]\n```"),
        pos
    );
    assert_eq!(ok("```text\n[[ ## sentiment ## ]]\npositive\n```"), pos);
    assert_eq!(
        ok("Here you go:\n```\n[[ ## sentiment ## ]]\npositive\n```"),
        pos
    );
    // Missing completed marker; quotes and punctuation around the value.
    assert_eq!(ok("[[ ## sentiment ## ]]\n\"Positive\"."), pos);
    assert_eq!(ok("[[ ## sentiment ## ]]\nLiteral['positive']"), pos);
    // No markers at all for a single output: the whole text is the value.
    assert_eq!(ok("positive"), pos);
    assert_eq!(ok("Positive\n[[ ## completed ## ]]"), pos);
}

/// DSPy #8379: markers not at the start of a line.
#[test]
fn issue_8379_markers_not_at_line_start() {
    let sig = sig(
        None,
        &[("q", s())],
        &[("reasoning", s()), ("answer", FieldType::Int)],
    );
    let out = parse::parse_chat(
        &sig,
        "Sure! [[ ## reasoning ## ]] two and two [[ ## answer ## ]] 4 [[ ## completed ## ]]",
    )
    .unwrap();
    assert_eq!(out["reasoning"], json!("two and two"));
    assert_eq!(out["answer"], json!(4));
}

/// DSPy #8901: markers not separated by newlines from the previous value.
#[test]
fn issue_8901_markers_not_newline_separated() {
    let sig = sig(None, &[("q", s())], &[("reasoning", s()), ("answer", s())]);
    let out = parse::parse_chat(
        &sig,
        "[[ ## reasoning ## ]]\nIt is Paris.[[ ## answer ## ]]\nParis[[ ## completed ## ]]",
    )
    .unwrap();
    assert_eq!(out["reasoning"], json!("It is Paris."));
    assert_eq!(out["answer"], json!("Paris"));
}

#[test]
fn first_occurrence_wins_and_order_is_free() {
    let sig = sig(None, &[("q", s())], &[("a", s()), ("b", FieldType::Int)]);
    let out = parse::parse_chat(
        &sig,
        "[[ ## b ## ]]\n1\n\n[[ ## a ## ]]\nfirst\n\n[[ ## a ## ]]\nsecond\n\n[[ ## b ## ]]\n2",
    )
    .unwrap();
    assert_eq!(out["a"], json!("first"));
    assert_eq!(out["b"], json!(1));
    // Key order follows the signature, not the reply.
    assert_eq!(out.keys().collect::<Vec<_>>(), vec!["a", "b"]);
}

#[test]
fn typed_conversions() {
    let one = |ty: FieldType, text: &str| parse::convert(&ty, text);
    assert_eq!(one(FieldType::Int, "4"), Ok(json!(4)));
    assert_eq!(one(FieldType::Int, "4.0"), Ok(json!(4)));
    assert_eq!(one(FieldType::Int, "$1,200"), Ok(json!(1200)));
    assert_eq!(one(FieldType::Int, "-7\n\nbecause"), Ok(json!(-7)));
    assert!(one(FieldType::Int, "4.5").is_err());
    assert!(one(FieldType::Int, "four").is_err());
    assert_eq!(one(FieldType::Float, "0.75"), Ok(json!(0.75)));
    assert_eq!(one(FieldType::Float, "$1,200.50"), Ok(json!(1200.5)));
    assert!(one(FieldType::Float, "nan").is_err());
    for (t, b) in [
        ("True", true),
        ("false", false),
        ("yes", true),
        ("No.", false),
        ("`true`", true),
    ] {
        assert_eq!(one(FieldType::Bool, t), Ok(json!(b)), "{t}");
    }
    assert!(one(FieldType::Bool, "maybe").is_err());
    assert_eq!(one(list(s()), r#"["a", "b"]"#), Ok(json!(["a", "b"])));
    assert_eq!(one(list(s()), "['a', \"b\"]"), Ok(json!(["a", "b"])));
    assert_eq!(
        one(list(s()), "- a\n- b\n* c\n1. d\n2) e"),
        Ok(json!(["a", "b", "c", "d", "e"]))
    );
    assert_eq!(
        one(list(FieldType::Int), "[1, 2.0, \"3\"]"),
        Ok(json!([1, 2, 3]))
    );
    assert_eq!(one(list(s()), "[]"), Ok(json!([])));
    assert!(one(list(FieldType::Int), "[1, x]").is_err());
    let e = one(list(enm(&["a", "b"])), "a\nc").unwrap_err();
    assert!(e.contains("item 2"), "{e}");
    for t in ["None", "null", "", "`None`"] {
        assert_eq!(one(opt(FieldType::Int), t), Ok(Value::Null), "{t:?}");
    }
    assert_eq!(one(opt(FieldType::Int), "1932"), Ok(json!(1932)));
    assert_eq!(
        one(FieldType::Json { schema: None }, "```json\n{\"a\": 1}\n```"),
        Ok(json!({"a": 1}))
    );
    assert!(one(FieldType::Json { schema: None }, "[1]").is_err());
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}}, "required": ["city"], "additionalProperties": false});
    let ty = FieldType::Json {
        schema: Some(schema),
    };
    assert_eq!(
        one(ty.clone(), r#"{"city": "Paris", "n": 2}"#),
        Ok(json!({"city": "Paris", "n": 2}))
    );
    assert!(one(ty.clone(), r#"{"n": 2}"#).unwrap_err().contains("city"));
    assert!(one(ty.clone(), r#"{"city": "Paris", "zip": 1}"#)
        .unwrap_err()
        .contains("zip"));
    assert!(one(ty, r#"{"city": 3}"#).is_err());
}

#[test]
fn failures_name_the_field_and_keep_the_raw_reply() {
    let sig = sig(
        None,
        &[("q", s())],
        &[("answer", s()), ("count", FieldType::Int)],
    );
    let reply = "[[ ## answer ## ]]\nhi\n\n[[ ## count ## ]]\nmany";
    let e = parse::parse_chat(&sig, reply).unwrap_err();
    assert_eq!(e.field, "count");
    assert_eq!(e.raw, reply);
    assert!(e.message.contains("integer"), "{}", e.message);

    let e = parse::parse_chat(&sig, "[[ ## answer ## ]]\nhi").unwrap_err();
    assert_eq!(e.field, "count");
    assert!(
        e.message.contains("no `[[ ## count ## ]]`"),
        "{}",
        e.message
    );

    let e = parse::parse_chat(&sentiment_sig(), "[[ ## sentiment ## ]]\nneutral").unwrap_err();
    assert_eq!(e.field, "sentiment");
    assert!(e.message.contains("positive, negative"), "{}", e.message);

    // Multi-output without markers is not guessed at: the reply as a whole
    // has no structure (issue #17: not even when outputs could be defaulted).
    assert_eq!(parse::parse_chat(&sig, "hi 4").unwrap_err().field, "*");
}

#[test]
fn json_replies() {
    let sig = sig(
        None,
        &[("q", s())],
        &[
            ("answer", s()),
            ("confidence", FieldType::Float),
            ("year", opt(FieldType::Int)),
        ],
    );
    let out = parse::parse_json(
        &sig,
        "Sure, here it is:\n```json\n{\"Answer\": \"Paris\", \"confidence\": \"0.9\"}\n```\nHope it helps {:",
    )
    .unwrap();
    assert_eq!(
        out,
        obj(json!({"answer": "Paris", "confidence": 0.9, "year": null}))
    );
    let out = parse::parse_json(&sig, "{'answer': 'x', 'confidence': 1, 'year': None}").unwrap();
    assert_eq!(out["year"], Value::Null);
    let e = parse::parse_json(&sig, "{\"answer\": \"x\"}").unwrap_err();
    assert_eq!(e.field, "confidence");
    assert_eq!(
        parse::parse_json(&sig, "no json here").unwrap_err().field,
        "*"
    );
    // A single output may come back bare.
    assert_eq!(
        parse::parse_json(&sentiment_sig(), "negative").unwrap()["sentiment"],
        json!("negative")
    );
    assert_eq!(
        AdapterKind::Json
            .parse(&sentiment_sig(), "{\"sentiment\": \"POSITIVE\"}")
            .unwrap()["sentiment"],
        json!("positive")
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn rich_sig() -> Signature {
        sig(
            None,
            &[("q", s())],
            &[
                ("a", s()),
                ("b", FieldType::Int),
                ("c", list(opt(FieldType::Float))),
                (
                    "d",
                    FieldType::Json {
                        schema: Some(
                            json!({"type": "object", "properties": {"x": {"type": "array", "items": {"type": "integer"}}}}),
                        ),
                    },
                ),
                ("e", enm(&["x", "y"])),
            ],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn parse_never_panics(reply in any::<String>()) {
            let sig = rich_sig();
            let _ = parse::parse_chat(&sig, &reply);
            let _ = parse::parse_json(&sig, &reply);
            let _ = parse::parse_chat(&sentiment_sig(), &reply);
        }

        #[test]
        fn parse_never_panics_on_near_structure(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("[[ ## a ## ]]".to_string()),
                    Just("[[## b##]]".to_string()),
                    Just("[ # c ]".to_string()),
                    Just("[[ ## completed ## ]]".to_string()),
                    Just("```".to_string()),
                    Just("{\"x\": [1, ".to_string()),
                    Just("['".to_string()),
                    Just("\\".to_string()),
                    "[\\[\\]{}()'\",:#a-z0-9 \n\\\\é]{0,12}",
                ],
                0..24,
            )
        ) {
            let reply: String = parts.concat();
            let sig = rich_sig();
            let _ = parse::parse_chat(&sig, &reply);
            let _ = parse::parse_json(&sig, &reply);
        }
    }
}

// ---------------------------------------------------------------- grammars

#[test]
fn chat_grammar_for_sentiment() {
    insta::assert_snapshot!(
        "chat_grammar_sentiment",
        grammar::chat_grammar(&sentiment_sig(), None)
    );
}

fn multi_type_sig() -> Signature {
    sig(
        None,
        &[("q", s())],
        &[
            ("reasoning", s()),
            ("label", enm(&["yes", "no \"way\""])),
            ("count", FieldType::Int),
            ("score", FieldType::Float),
            ("is_sure", FieldType::Bool),
            ("tags", list(s())),
            ("year", opt(FieldType::Int)),
            (
                "card",
                FieldType::Json {
                    schema: Some(
                        json!({"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}}}),
                    ),
                },
            ),
            ("extra", FieldType::Json { schema: None }),
        ],
    )
}

#[test]
fn chat_grammar_for_multi_type_signature() {
    let g = grammar::chat_grammar(&multi_type_sig(), None);
    assert_grammar_well_formed(&g);
    insta::assert_snapshot!("chat_grammar_multi_type", g);
}

#[test]
fn json_grammar_for_multi_type_signature() {
    let g = grammar::json_grammar(&multi_type_sig(), None);
    assert_grammar_well_formed(&g);
    insta::assert_snapshot!("json_grammar_multi_type", g);
}

/// With a token budget, top-level string fields are bounded in characters
/// so the fields after them (the answer after the reasoning) still fit.
#[test]
fn grammars_bound_free_text_by_the_token_budget() {
    let sig = multi_type_sig();
    // 9 outputs: 400 - 16 * 10 tokens at one char each, one string field.
    assert_eq!(grammar::text_budget(&sig, 400), Some(240));
    assert_eq!(grammar::text_budget(&sig, 10), Some(32), "floor");
    assert_eq!(grammar::text_budget(&sentiment_sig(), 400), None);
    let chat = AdapterKind::Chat.grammar(&sig, 400);
    assert_grammar_well_formed(&chat);
    assert!(
        chat.contains("reasoning-value ::= text-start text-char{0,239}\n"),
        "{chat}"
    );
    // Strings inside lists and JSON stay unbounded (only top-level fields).
    assert!(
        chat.contains("tags-value ::= \"[\" ws ( ( json-string )"),
        "{chat}"
    );
    let json = AdapterKind::Json.grammar(&sig, 400);
    assert_grammar_well_formed(&json);
    assert!(
        json.contains(r#"reasoning-value ::= "\"" json-char{0,240} "\"""#),
        "{json}"
    );
    insta::assert_snapshot!("chat_grammar_multi_type_bounded", chat);
    // No string field: the budget changes nothing.
    assert_eq!(
        AdapterKind::Chat.grammar(&sentiment_sig(), 64),
        grammar::chat_grammar(&sentiment_sig(), None)
    );
}

/// Structural checks a GBNF parser would make: one `root`, every rule
/// defined once with a valid name, every referenced rule defined, quotes
/// and brackets balanced on every line.
fn assert_grammar_well_formed(g: &str) {
    let mut defined = Vec::new();
    for line in g.lines() {
        let (name, body) = line
            .split_once(" ::= ")
            .unwrap_or_else(|| panic!("not a rule: {line}"));
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "bad rule name {name:?}"
        );
        assert!(!defined.contains(&name), "rule {name} defined twice");
        defined.push(name);
        // Walk the body outside literals and classes: collect identifiers.
        let mut chars = body.chars().peekable();
        let mut parens = 0i32;
        while let Some(c) = chars.next() {
            match c {
                '"' => loop {
                    match chars.next() {
                        Some('\\') => {
                            chars.next();
                        }
                        Some('"') => break,
                        Some(_) => {}
                        None => panic!("unterminated literal in {line}"),
                    }
                },
                '[' => loop {
                    match chars.next() {
                        Some('\\') => {
                            chars.next();
                        }
                        Some(']') => break,
                        Some(_) => {}
                        None => panic!("unterminated class in {line}"),
                    }
                },
                '(' => parens += 1,
                ')' => parens -= 1,
                _ => {}
            }
            assert!(parens >= 0, "unbalanced parens in {line}");
        }
        assert_eq!(parens, 0, "unbalanced parens in {line}");
    }
    assert_eq!(defined.first(), Some(&"root"));
    for line in g.lines() {
        let body = line.split_once(" ::= ").unwrap().1;
        let stripped = strip_literals(body);
        for word in stripped.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
            if word.contains(|c: char| c.is_ascii_lowercase()) && !word.starts_with('-') {
                assert!(
                    defined.contains(&word),
                    "rule `{word}` used but not defined in:\n{g}"
                );
            }
        }
    }
}

fn strip_literals(body: &str) -> String {
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '[' => {
                let end = if c == '"' { '"' } else { ']' };
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == end {
                        break;
                    }
                }
                out.push(' ');
            }
            '{' => {
                for d in chars.by_ref() {
                    if d == '}' {
                        break;
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------- inspect

#[test]
fn inspect_prints_messages_with_placeholders() {
    let file = root().join("tests/fixtures/adapter/qa.yaml");
    let (code, out, err) = run(lmc().arg("inspect").arg(&file));
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("=== answer (predict) ==="), "{out}");
    assert!(
        out.contains("=== summarize (chain_of_thought) ==="),
        "{out}"
    );
    assert!(
        out.contains("--- system ---\nYour input fields are:"),
        "{out}"
    );
    assert!(
        out.contains("[[ ## question ## ]]\n{question}\n\nRespond with"),
        "{out}"
    );
    assert!(out.contains("`[[ ## reasoning ## ]]`"), "{out}");
}

#[test]
fn inspect_one_node_with_inputs_as_json() {
    let file = root().join("tests/fixtures/adapter/qa.yaml");
    let (code, out, err) = run(lmc().arg("inspect").arg(&file).args([
        "--node",
        "answer",
        "--input",
        "question=What is 2+2?",
        "--json",
    ]));
    assert_eq!(code, 0, "stderr: {err}");
    let v: Value = serde_json::from_str(&out).expect("JSON output");
    let preds = v.as_array().expect("one entry per predictor");
    assert_eq!(preds.len(), 1);
    assert_eq!(preds[0]["predictor"], json!("answer"));
    let msgs = preds[0]["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], json!("system"));
    assert!(msgs.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .starts_with("[[ ## question ## ]]\nWhat is 2+2?\n\n"));
}

#[test]
fn inspect_json_adapter() {
    let file = root().join("tests/fixtures/adapter/qa.yaml");
    let (code, out, err) =
        run(lmc()
            .arg("inspect")
            .arg(&file)
            .args(["--node", "answer", "--adapter", "json"]));
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        out.contains("Outputs will be a JSON object with the following fields."),
        "{out}"
    );
    assert!(
        out.contains("Respond with a JSON object in the following order of fields: `answer`."),
        "{out}"
    );
}

#[test]
fn inspect_errors_exit_2() {
    let file = root().join("tests/fixtures/adapter/qa.yaml");
    let (code, _, err) = run(lmc().arg("inspect").arg(&file).args(["--node", "answr"]));
    assert_eq!(code, 2);
    assert!(err.contains("answer"), "did-you-mean expected: {err}");
    let (code, _, err) = run(lmc().arg("inspect").arg(&file).args(["--input", "nope"]));
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = run(lmc()
        .arg("inspect")
        .arg(root().join("tests/fixtures/adapter/missing.yaml")));
    assert_eq!(code, 2);
}

#[test]
fn inspect_sentiment_program() {
    let file = root().join("programs/sentiment.yaml");
    let (code, out, err) = run(lmc()
        .arg("inspect")
        .arg(&file)
        .args(["--input", "sentence=a gorgeous, witty film"]));
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        out.contains("[[ ## sentence ## ]]\na gorgeous, witty film\n\nRespond with"),
        "{out}"
    );
    assert!(
        out.contains("must exactly match (no extra characters) one of: positive; negative"),
        "{out}"
    );
}

/// An artifact's compiled instruction and demos are what inspect shows.
#[test]
fn inspect_artifact_shows_compiled_state() {
    use lmc::artifact::{Artifact, Lineage};
    use lmc::overlay::{Overlay, PredictorState};
    let program = lmc::program::load(&root().join("tests/fixtures/adapter/qa.yaml")).unwrap();
    let mut overlay = Overlay::default();
    overlay.predictors.insert(
        "answer".into(),
        PredictorState {
            instructions: Some("Answer tersely.".into()),
            demos: vec![demo(json!({"question": "2+2?", "answer": "4"}))],
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("qa.artifact.json");
    Artifact::new(&program, &overlay, None, Lineage::default(), &out)
        .save(&out)
        .unwrap();
    let (code, stdout, err) = run(lmc().arg("inspect").arg(&out).args(["--node", "answer"]));
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        stdout.contains("your objective is: \n        Answer tersely."),
        "{stdout}"
    );
    assert!(
        stdout.contains("--- user ---\n[[ ## question ## ]]\n2+2?\n\n--- assistant ---\n[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]\n"),
        "{stdout}"
    );
}

/// Replies of exactly the shapes the grammars admit parse to typed values:
/// the grammar and the parser agree on every type.
#[test]
fn grammar_shaped_replies_parse() {
    let sig = multi_type_sig();
    let chat_reply = "[[ ## reasoning ## ]]\nbecause [x]\n\n[[ ## label ## ]]\nno \"way\"\n\n[[ ## count ## ]]\n-12\n\n[[ ## score ## ]]\n1.5e3\n\n[[ ## is_sure ## ]]\ntrue\n\n[[ ## tags ## ]]\n[\"a\",\n  \"b\"]\n\n[[ ## year ## ]]\nNone\n\n[[ ## card ## ]]\n{\"city\": \"Oslo\", \"n\": 3}\n\n[[ ## extra ## ]]\n{}\n\n[[ ## completed ## ]]";
    let want = obj(json!({
        "reasoning": "because [x]", "label": "no \"way\"", "count": -12, "score": 1500.0,
        "is_sure": true, "tags": ["a", "b"], "year": null,
        "card": {"city": "Oslo", "n": 3}, "extra": {}
    }));
    assert_eq!(parse::parse_chat(&sig, chat_reply).unwrap(), want);
    let json_reply = "{\"reasoning\": \"because [x]\", \"label\": \"no \\\"way\\\"\", \"count\": -12, \"score\": 1.5e3, \"is_sure\": true, \"tags\": [\"a\", \"b\"], \"year\": null, \"card\": {\"city\": \"Oslo\", \"n\": 3}, \"extra\": {}}";
    assert_eq!(parse::parse_json(&sig, json_reply).unwrap(), want);
}

/// The real llama.cpp accepts the multi-type chat and JSON grammars, and the
/// default model constrained by them produces a parseable reply (two short
/// calls, ~60 completion tokens each; needs the model fetched by
/// `scripts/setup.sh`).
#[cfg(feature = "embedded")]
#[test]
fn embedded_model_under_multi_type_grammars_replies_parseably() {
    use lmc::lm::embedded::{EmbeddedConfig, EmbeddedLm};
    use lmc::lm::{Lm, LmRequest};

    // Free text first: its bound (from max_tokens) must leave room for
    // every field after it.
    let sig = sig(
        Some("Describe the review."),
        &[("review", s())],
        &[
            ("summary", s()),
            ("stars", FieldType::Int),
            ("recommend", FieldType::Bool),
            ("year", opt(FieldType::Float)),
            ("aspects", list(enm(&["acting", "plot", "music"]))),
        ],
    );
    let lm = EmbeddedLm::load(EmbeddedConfig {
        model_path: crate::support::model_path(),
        threads: None,
        context: Some(4096),
        max_batch: Some(2),
    })
    .expect("the default model is fetched by `bash scripts/setup.sh`");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inputs = obj(json!({"review": "A gorgeous, witty film with a wonderful score."}));
    for adapter in [AdapterKind::Chat, AdapterKind::Json] {
        let req = LmRequest {
            model: lm.model(),
            messages: adapter.render(&sig, &[], &inputs),
            temperature: 0.0,
            max_tokens: 200,
            rollout_id: None,
            grammar: Some(adapter.grammar(&sig, 200)),
            response_format: None,
            choice: None,
        };
        let bound = lmc::adapter::grammar::text_budget(&sig, 200).unwrap();
        let resp = rt
            .block_on(lm.complete(&req))
            .unwrap_or_else(|e| panic!("{adapter:?} grammar rejected or call failed: {e}"));
        let parsed = adapter
            .parse(&sig, &resp.text)
            .unwrap_or_else(|e| panic!("{adapter:?} reply not parseable: {e}\n{}", resp.text));
        assert_eq!(parsed.len(), 5, "{parsed:?}");
        let summary = parsed["summary"].as_str().unwrap_or_default();
        let units = summary.chars().count();
        assert!(
            !summary.is_empty() && units <= bound,
            "summary of {} chars, bound {bound}: {summary:?}",
            summary.chars().count()
        );
        assert!(parsed["stars"].is_i64(), "{parsed:?}");
        assert!(parsed["recommend"].is_boolean(), "{parsed:?}");
    }
}
