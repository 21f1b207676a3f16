//! Cluster specs from a file: YAML (one or more documents), TOML or JSON, holding one spec,
//! a list of them, or `clusters:` with a list.

use std::path::Path;

use serde_json::Value;

use super::client::{CtlError, CtlResult, exit};

/// The specs in `path`, in file order. Each must be an object with a `name`.
pub fn read(path: &Path) -> CtlResult<Vec<Value>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CtlError::new(exit::USAGE, format!("{}: {e}", path.display())))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    parse(&text, &ext).map_err(|e| CtlError::new(exit::USAGE, format!("{}: {e}", path.display())))
}

/// `ext` picks the format: `toml`, `json`, else YAML.
pub fn parse(text: &str, ext: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = match ext {
        "toml" => {
            let v: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
            vec![serde_json::to_value(v).map_err(|e| e.to_string())?]
        }
        "json" => vec![serde_json::from_str(text).map_err(|e| e.to_string())?],
        _ => {
            let mut docs = Vec::new();
            for doc in serde_yaml::Deserializer::from_str(text) {
                let v: Value = serde::Deserialize::deserialize(doc).map_err(|e| e.to_string())?;
                if !v.is_null() {
                    docs.push(v);
                }
            }
            docs
        }
    };
    let mut specs = Vec::new();
    for doc in docs {
        match doc {
            Value::Array(items) => specs.extend(items),
            Value::Object(mut map) if map.contains_key("clusters") => {
                match map.remove("clusters") {
                    Some(Value::Array(items)) => specs.extend(items),
                    _ => return Err("`clusters` must be a list of cluster specs".into()),
                }
            }
            other => specs.push(other),
        }
    }
    if specs.is_empty() {
        return Err("no cluster specs in the file".into());
    }
    for (i, s) in specs.iter().enumerate() {
        if !s.get("name").is_some_and(Value::is_string) {
            return Err(format!("spec {} has no name", i + 1));
        }
    }
    Ok(specs)
}

/// Where in the file a refusal of spec `name` points: the 1-based line of the field the API
/// named (the problem's `field`, or the key of an "unknown field"), nearest that spec's
/// `name:` line. `None` when the file does not show it.
pub fn locate(text: &str, name: &str, problem: &Value) -> Option<usize> {
    let detail = problem["detail"].as_str().unwrap_or_default();
    let key = problem["field"].as_str().map(str::to_string).or_else(|| {
        let rest = detail.split("unknown field `").nth(1)?;
        Some(rest.split('`').next()?.to_string())
    })?;
    // The last part of a nested field (`location.lat` is `lat:` in the file).
    let key = key.rsplit('.').next().unwrap_or(&key).to_string();
    let key_of = |line: &str| {
        let line = line.trim_start().trim_start_matches("- ").trim_start();
        let (k, _) = line.split_once(':')?;
        Some(k.trim().trim_matches(['"', '\'']).to_string())
    };
    let lines: Vec<&str> = text.lines().collect();
    let named = lines.iter().position(|l| {
        key_of(l).as_deref() == Some("name")
            && l.split_once(':')
                .is_some_and(|(_, v)| v.trim().trim_matches(['"', '\'']) == name)
    });
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| key_of(l).as_deref() == Some(key.as_str()))
        .min_by_key(|(i, _)| named.map_or(*i, |n| i.abs_diff(n)))
        .map(|(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_point_at_the_line_of_the_field() {
        let text =
            "name: a\nkind: ray\ngpu_count: 8\n---\nname: b\ngpu_cont: 8\nduration_hours: 1\n";
        let unknown =
            serde_json::json!({"detail": "unknown field `gpu_cont`, expected one of `name`"});
        assert_eq!(locate(text, "b", &unknown), Some(6));
        let field = serde_json::json!({"field": "gpu_count", "detail": "must be 1 to 4096"});
        assert_eq!(locate(text, "a", &field), Some(3));
        let nested = serde_json::json!({"field": "duration_hours"});
        assert_eq!(locate(text, "b", &nested), Some(7));
        assert_eq!(
            locate(text, "a", &serde_json::json!({"detail": "no"})),
            None
        );
    }

    #[test]
    fn yaml_toml_and_json_hold_one_or_many() {
        let yaml = "name: a\nkind: ray\ngpu_count: 8\nduration_hours: 1\n---\nname: b\nkind: container\nimage: x\ngpu_count: 1\nduration_hours: 2\nlabels:\n  team: ml\n";
        let specs = parse(yaml, "yaml").unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1]["labels"]["team"], "ml");
        assert_eq!(specs[0]["gpu_count"], 8);
        let toml = "[[clusters]]\nname = \"a\"\nkind = \"ray\"\ngpu_count = 8\nduration_hours = 1\n\n[[clusters]]\nname = \"b\"\nkind = \"ray\"\ngpu_count = 8\nduration_hours = 1\n";
        assert_eq!(parse(toml, "toml").unwrap().len(), 2);
        let list = "clusters:\n  - name: a\n  - name: b\n";
        assert_eq!(parse(list, "yml").unwrap().len(), 2);
        assert_eq!(parse("[{\"name\": \"a\"}]", "json").unwrap().len(), 1);
        assert!(
            parse("kind: ray\n", "yaml")
                .unwrap_err()
                .contains("no name")
        );
        assert!(parse("", "yaml").is_err());
    }
}
