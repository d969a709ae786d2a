//! What the example server offers: the definitions of its tools, resources
//! and prompt, and the pure logic behind them (argument parsing, sums,
//! completions). The stateful parts live in [`crate::handler`].

use std::{sync::Arc, time::Duration};

use rmcp::model::{
    CallToolResult, ContentBlock, JsonObject, Prompt, PromptArgument, Resource, ResourceTemplate,
    Tool, ToolAnnotations,
};
use serde::de::DeserializeOwned;
use serde_json::{Number, Value, json};

/// The name reported in `serverInfo.name`, whatever the instance is called.
pub const SERVER_NAME: &str = "vmcp-example-server";
/// The instance name used when `--name` is not given.
pub const DEFAULT_INSTANCE_NAME: &str = "example";
/// The URI template of the item resources; any `{id}` can be read.
pub const ITEM_URI_TEMPLATE: &str = "example://items/{id}";
/// What every item URI starts with.
pub const ITEM_URI_PREFIX: &str = "example://items/";
/// The only prompt.
pub const GREET_PROMPT: &str = "greet";
/// The names `completion/complete` suggests for the `greet` prompt's `name`.
pub const GREET_NAMES: &[&str] = &[
    "Ada", "Alan", "Alice", "Barbara", "Bob", "Carol", "Dave", "Grace",
];
/// The longest `slow` call accepted, so a typo cannot park a request for days.
pub const MAX_SLOW_MILLIS: u64 = 600_000;
/// How often `slow` reports progress.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// The largest added latency `set_latency` and `set_call_latency` accept.
pub const MAX_LATENCY_MILLIS: u64 = 600_000;

/// Tool names, in the order `tools/list` returns them.
pub mod tool_names {
    /// Returns its `text` argument.
    pub const ECHO: &str = "echo";
    /// Returns the sum of `a` and `b`.
    pub const ADD: &str = "add";
    /// Returns the instance name.
    pub const WHOAMI: &str = "whoami";
    /// Sleeps for `millis`, reporting progress and honouring cancellation.
    pub const SLOW: &str = "slow";
    /// Always returns a result with `isError: true`.
    pub const FAIL: &str = "fail";
    /// Adds or removes the `extra` tool and announces the change.
    pub const TOGGLE_EXTRA: &str = "toggle_extra";
    /// Only listed while toggled on.
    pub const EXTRA: &str = "extra";
    /// Latency control (only with `--latency-tools`): delay added to every
    /// answer, `ping` included.
    pub const SET_LATENCY: &str = "set_latency";
    /// Latency control (only with `--latency-tools`): delay added to tool
    /// calls only, so that health probes stay fast.
    pub const SET_CALL_LATENCY: &str = "set_call_latency";
}

/// The URI of the instance's info resource.
pub fn info_uri(instance: &str) -> String {
    format!("example://{instance}/info")
}

/// The text of the instance's info resource.
pub fn info_text(instance: &str) -> String {
    format!("This is {SERVER_NAME} instance \"{instance}\".")
}

/// The text of item `id`, or `None` when `uri` is not an item URI.
pub fn item_text(uri: &str) -> Option<String> {
    let id = uri.strip_prefix(ITEM_URI_PREFIX)?;
    (!id.is_empty()).then(|| format!("Item {id}"))
}

/// Every tool definition; `extra` only when `extra_enabled`.
pub fn tools(extra_enabled: bool) -> Vec<Tool> {
    let mut tools = vec![
        Tool::new(
            tool_names::ECHO,
            "Return the given text unchanged.",
            object_schema(
                [(
                    "text",
                    json!({"type": "string", "description": "The text to return."}),
                )],
                &["text"],
            ),
        )
        .with_annotations(read_only()),
        Tool::new(
            tool_names::ADD,
            "Add two numbers.",
            object_schema(
                [
                    (
                        "a",
                        json!({"type": "number", "description": "The first addend."}),
                    ),
                    (
                        "b",
                        json!({"type": "number", "description": "The second addend."}),
                    ),
                ],
                &["a", "b"],
            ),
        )
        .with_raw_output_schema(object_schema(
            [("sum", json!({"type": "number", "description": "a + b"}))],
            &["sum"],
        ))
        .with_annotations(read_only()),
        Tool::new(
            tool_names::WHOAMI,
            "Return the name of this server instance.",
            object_schema([], &[]),
        )
        .with_annotations(read_only()),
        Tool::new(
            tool_names::SLOW,
            "Sleep for the given time, sending progress notifications every 100 ms when the \
             request has a progress token; stops early when cancelled.",
            object_schema(
                [(
                    "millis",
                    json!({
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_SLOW_MILLIS,
                        "description": "How long to sleep, in milliseconds."
                    }),
                )],
                &["millis"],
            ),
        )
        .with_annotations(read_only()),
        Tool::new(
            tool_names::FAIL,
            "Always fail: returns a tool result with isError set.",
            object_schema([], &[]),
        )
        .with_annotations(read_only()),
        Tool::new(
            tool_names::TOGGLE_EXTRA,
            "Add the `extra` tool, or remove it if present, and send \
             notifications/tools/list_changed.",
            object_schema([], &[]),
        )
        .with_annotations(ToolAnnotations::new().read_only(false).destructive(false)),
    ];
    if extra_enabled {
        tools.push(
            Tool::new(
                tool_names::EXTRA,
                "A tool that only exists while toggled on by `toggle_extra`.",
                object_schema([], &[]),
            )
            .with_annotations(read_only()),
        );
    }
    tools
}

/// One tool definition by name, as [`tools`] would list it.
pub fn tool(name: &str, extra_enabled: bool) -> Option<Tool> {
    tools(extra_enabled)
        .into_iter()
        .find(|tool| tool.name == name)
}

/// The latency control tools, listed after the others when the server runs
/// with `--latency-tools`. They answer at once, whatever latency is set.
pub fn latency_tools() -> Vec<Tool> {
    let millis = || {
        json!({
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_LATENCY_MILLIS,
            "description": "Added delay in milliseconds; 0 turns it off."
        })
    };
    let annotations = || ToolAnnotations::new().read_only(false).destructive(false);
    vec![
        Tool::new(
            tool_names::SET_LATENCY,
            "Delay every later answer of this server (ping, lists, reads, prompts and tool \
             calls, for every session) by the given time.",
            object_schema([("millis", millis())], &["millis"]),
        )
        .with_annotations(annotations()),
        Tool::new(
            tool_names::SET_CALL_LATENCY,
            "Delay every later tool call of this server (for every session) by the given \
             time, on top of the latency set with set_latency; ping stays fast.",
            object_schema([("millis", millis())], &["millis"]),
        )
        .with_annotations(annotations()),
    ]
}

/// The info resource of the instance.
pub fn info_resource(instance: &str) -> Resource {
    Resource::new(info_uri(instance), "info")
        .with_title(format!("About {instance}"))
        .with_description("Which example server instance this is.")
        .with_mime_type("text/plain")
}

/// The template of the item resources.
pub fn item_template() -> ResourceTemplate {
    ResourceTemplate::new(ITEM_URI_TEMPLATE, "item")
        .with_title("Item")
        .with_description("A generated item; any id can be read.")
        .with_mime_type("text/plain")
}

/// The `greet` prompt.
pub fn greet_prompt() -> Prompt {
    Prompt::new(
        GREET_PROMPT,
        Some("Ask the model to greet someone."),
        Some(vec![
            PromptArgument::new("name")
                .with_description("Who to greet (completion suggests a few names).")
                .with_required(true),
        ]),
    )
}

/// The text of the `greet` prompt's single user message.
pub fn greeting(name: &str) -> String {
    format!("Please greet {name} warmly.")
}

/// The [`GREET_NAMES`] starting with `prefix`, ignoring ASCII case.
pub fn complete_greet_name(prefix: &str) -> Vec<String> {
    GREET_NAMES
        .iter()
        .filter(|name| {
            name.get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        })
        .map(|name| (*name).to_owned())
        .collect()
}

/// `a + b`: exact for integers that do not overflow, floating point otherwise.
/// `None` when the sum is not a finite number.
pub fn sum(a: &Number, b: &Number) -> Option<Number> {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64())
        && let Some(sum) = a.checked_add(b)
    {
        return Some(sum.into());
    }
    Number::from_f64(a.as_f64()? + b.as_f64()?)
}

/// Arguments of `echo`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoArgs {
    /// The text to return.
    pub text: String,
}

/// Arguments of `add`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddArgs {
    /// The first addend.
    pub a: Number,
    /// The second addend.
    pub b: Number,
}

/// Arguments of `slow`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowArgs {
    /// How long to sleep, in milliseconds.
    pub millis: u64,
}

/// Arguments of `set_latency` and `set_call_latency`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyArgs {
    /// Added delay in milliseconds.
    pub millis: u64,
}

/// Arguments of the tools that take none.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// Parse tool arguments; a missing argument object counts as `{}`.
///
/// The error is a message meant for the caller, to be returned as a tool
/// result with `isError: true` (MCP reports input validation failures in-band
/// so that a model can correct its call).
pub fn parse_args<T: DeserializeOwned>(
    tool: &str,
    arguments: Option<JsonObject>,
) -> Result<T, String> {
    serde_json::from_value(Value::Object(arguments.unwrap_or_default()))
        .map_err(|error| format!("invalid arguments for `{tool}`: {error}"))
}

/// A successful tool result holding one text block.
pub fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

/// A failed tool result (`isError: true`) holding one text block.
pub fn error_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

fn read_only() -> ToolAnnotations {
    ToolAnnotations::new().read_only(true)
}

/// A JSON Schema for an object with exactly the given properties.
fn object_schema<const N: usize>(
    properties: [(&str, Value); N],
    required: &[&str],
) -> Arc<JsonObject> {
    let properties: JsonObject = properties
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), schema))
        .collect();
    let mut schema = JsonObject::new();
    schema.insert("type".to_owned(), json!("object"));
    schema.insert("properties".to_owned(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".to_owned(), json!(required));
    }
    schema.insert("additionalProperties".to_owned(), Value::Bool(false));
    Arc::new(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_integers_exactly_and_falls_back_to_floats() {
        let n = |v: Value| match v {
            Value::Number(n) => n,
            other => panic!("not a number: {other}"),
        };
        assert_eq!(sum(&n(json!(2)), &n(json!(3))), Some(5.into()));
        assert_eq!(
            sum(&n(json!(i64::MAX)), &n(json!(1))),
            Number::from_f64(i64::MAX as f64 + 1.0)
        );
        assert_eq!(sum(&n(json!(0.5)), &n(json!(1))), Number::from_f64(1.5));
    }

    #[test]
    fn completes_names_by_prefix_ignoring_case() {
        assert_eq!(complete_greet_name("al"), ["Alan", "Alice"]);
        assert_eq!(complete_greet_name(""), GREET_NAMES);
        assert!(complete_greet_name("zz").is_empty());
        // A multi-byte prefix must not split a character.
        assert!(complete_greet_name("é").is_empty());
    }

    #[test]
    fn item_uris_need_an_id() {
        assert_eq!(item_text("example://items/42").as_deref(), Some("Item 42"));
        assert_eq!(item_text("example://items/"), None);
        assert_eq!(item_text("example://other/42"), None);
    }

    #[test]
    fn schemas_are_closed_objects() {
        for tool in tools(true).into_iter().chain(latency_tools()) {
            assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
            assert_eq!(
                tool.input_schema["additionalProperties"], false,
                "{}",
                tool.name
            );
        }
    }

    #[test]
    fn parses_arguments_and_rejects_strays() {
        let args: EchoArgs = parse_args(
            "echo",
            Some(JsonObject::from_iter([("text".into(), json!("hi"))])),
        )
        .expect("valid echo arguments");
        assert_eq!(args.text, "hi");
        assert!(parse_args::<NoArgs>("fail", None).is_ok());
        assert!(
            parse_args::<NoArgs>(
                "fail",
                Some(JsonObject::from_iter([("x".into(), json!(1))]))
            )
            .is_err()
        );
        assert!(parse_args::<SlowArgs>("slow", None).is_err());
    }
}
