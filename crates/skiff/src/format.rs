//! Output shapes docker users know: human durations and sizes, aligned tables, and
//! Go-template `--format` field paths over inspect JSON.

use serde_json::Value;

/// docker's `units.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let m = s / 60;
    if m == 1 {
        return "About a minute".into();
    }
    if m < 60 {
        return format!("{m} minutes");
    }
    let h = (s as f64 / 3600.0).round() as i64;
    if h == 1 {
        return "About an hour".into();
    }
    if h < 48 {
        return format!("{h} hours");
    }
    if h < 24 * 7 * 2 {
        return format!("{} days", h / 24);
    }
    if h < 24 * 30 * 2 {
        return format!("{} weeks", h / 24 / 7);
    }
    if h < 24 * 365 * 2 {
        return format!("{} months", h / 24 / 30);
    }
    format!("{} years", h / 24 / 365)
}

/// An RFC 3339 time as docker's list formats print `CreatedAt` (Go's `time.Time`
/// in UTC: `2026-12-08 03:04:05 +0000 UTC`); "" for a time that does not parse.
pub fn created_at(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S +0000 UTC")
                .to_string()
        })
        .unwrap_or_default()
}

/// Seconds since an RFC 3339 time.
pub fn since(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| (chrono::Utc::now() - d.with_timezone(&chrono::Utc)).num_seconds())
        .unwrap_or(0)
}

/// docker's `units.HumanSizeWithPrecision(size, 3)` (decimal units).
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let s = format!("{:.3}", v);
    // %.3g-like: three significant digits.
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = if i == 0 {
        format!("{}", v as u64)
    } else {
        let t = format!("{:.*}", digits, v);
        let t = if t.contains('.') {
            t.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            t
        };
        let _ = s;
        t
    };
    format!("{s}{}", units[i])
}

/// docker's binary-unit sizes for `stats` (`1.5MiB`).
pub fn binary_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    // Go's %.4g: four significant digits.
    let decimals = if v >= 1000.0 {
        0
    } else if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let t = format!("{:.*}", decimals, v);
    let t = if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        t
    };
    t + units[i]
}

/// Print rows as docker's tabwriter does: columns padded to the widest cell plus
/// three spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Prints `rows` through a `--format` template as docker's list commands do: `table …`
/// aligns the columns (split at tabs) under headers made by the same template over
/// `headers` (each field's column name), `json` is `{{json .}}`, anything else is a
/// template printed once a row.
pub fn print_rows(tpl: &str, headers: &[(&str, &str)], rows: &[Value]) -> Result<(), String> {
    let tpl = if tpl == "json" { "{{json .}}" } else { tpl };
    match tpl.strip_prefix("table") {
        Some(body) => {
            let body = body.trim_start();
            let names: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, h)| (k.to_string(), Value::String(h.to_string())))
                .collect();
            let cells = |line: String| line.split('\t').map(str::to_string).collect::<Vec<_>>();
            let mut out = vec![cells(template(body, &Value::Object(names))?)];
            for v in rows {
                out.push(cells(template(body, v)?));
            }
            print!("{}", table(&out));
        }
        None => {
            for v in rows {
                println!("{}", template(tpl, v)?);
            }
        }
    }
    Ok(())
}

/// What `inspect` prints for `out`: each object through `--format`'s template, else
/// the array as indented JSON (docker's output).
pub fn print_inspect(out: &[Value], fmt: Option<&str>) -> anyhow::Result<()> {
    match fmt {
        Some(t) => {
            for v in out {
                println!("{}", template(t, v).map_err(|m| anyhow::anyhow!(m))?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(out)?),
    }
    Ok(())
}

/// Evaluate a Go-template subset over a JSON value: literal text, `{{.A.B}}`,
/// `{{range .A}}...{{end}}` with `{{.}}` inside, `{{println}}`, pipelines
/// (`{{.A | join ","}}`) and docker's functions (`json`, `index`, `join`, `split`,
/// `lower`, `upper`, `title`, `truncate`, `pad`). Unknown actions are an error naming
/// them.
pub fn template(tpl: &str, v: &Value) -> Result<String, String> {
    let mut out = String::new();
    render(tpl, v, &mut out)?;
    Ok(out)
}

fn render(tpl: &str, v: &Value, out: &mut String) -> Result<(), String> {
    let mut rest = tpl;
    while let Some(start) = rest.find("{{") {
        out.push_str(&unescape(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("template: unclosed action in {tpl:?}"))?;
        let action = after[..end]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        rest = &after[end + 2..];
        if let Some(expr) = action.strip_prefix("range ") {
            // Find the matching {{end}}.
            let (body, tail) = split_block(rest)?;
            let target = eval(expr.trim(), v)?;
            match &target {
                Value::Array(a) => {
                    for item in a {
                        render(body, item, out)?;
                    }
                }
                Value::Object(m) => {
                    for item in m.values() {
                        render(body, item, out)?;
                    }
                }
                _ => {}
            }
            rest = tail;
            continue;
        }
        if action == "println" {
            out.push('\n');
            continue;
        }
        let val = eval(action, v)?;
        out.push_str(&display(&val));
    }
    out.push_str(&unescape(rest));
    Ok(())
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t")
}

fn split_block(s: &str) -> Result<(&str, &str), String> {
    let mut depth = 0;
    let mut i = 0;
    while let Some(p) = s[i..].find("{{") {
        let at = i + p;
        let close = s[at..].find("}}").ok_or("template: unclosed action")? + at;
        let a = s[at + 2..close].trim();
        if a.starts_with("range ") || a.starts_with("if ") || a.starts_with("with ") {
            depth += 1;
        } else if a == "end" {
            if depth == 0 {
                return Ok((&s[..at], &s[close + 2..]));
            }
            depth -= 1;
        }
        i = close + 2;
    }
    Err("template: missing {{end}}".into())
}

/// Evaluates an action: a pipeline of commands (`.A | join ","`), each given the one
/// before's value as its last argument, as Go's text/template does.
fn eval(expr: &str, v: &Value) -> Result<Value, String> {
    let mut piped: Option<Value> = None;
    for cmd in split_pipeline(expr) {
        let toks = split_args(cmd);
        piped = Some(command(&toks, v, piped)?);
    }
    piped.ok_or_else(|| "template: empty action".into())
}

/// The commands of a pipeline (split at `|` outside quotes).
fn split_pipeline(expr: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut q, mut from) = (false, 0);
    for (i, c) in expr.char_indices() {
        match c {
            '"' => q = !q,
            '|' if !q => {
                out.push(expr[from..i].trim());
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(expr[from..].trim());
    out
}

/// A field path, string or number.
fn operand(tok: &str, v: &Value) -> Result<Value, String> {
    if tok.starts_with('.') {
        let mut cur = v.clone();
        for seg in tok.split('.').filter(|s| !s.is_empty()) {
            cur = match cur {
                Value::Object(m) => m.get(seg).cloned().unwrap_or(Value::Null),
                _ => Value::Null,
            };
        }
        return Ok(cur);
    }
    if tok.len() >= 2 && tok.starts_with('"') && tok.ends_with('"') {
        return Ok(Value::String(tok[1..tok.len() - 1].to_string()));
    }
    if let Ok(n) = tok.parse::<i64>() {
        return Ok(Value::from(n));
    }
    Err(format!("template: function \"{tok}\" not defined"))
}

/// A command of a pipeline: a value (a field, possibly with one argument as docker's
/// `{{.Label "app"}}`, a string, a number) or one of docker's template functions
/// (`json`, `index`, `join`, `split`, `lower`, `upper`, `title`, `truncate`, `pad`).
fn command(toks: &[String], v: &Value, piped: Option<Value>) -> Result<Value, String> {
    let Some(first) = toks.first() else {
        return Err("template: missing value for command".into());
    };
    let name = first.as_str();
    let is_function =
        !(name.starts_with('.') || name.starts_with('"') || name.parse::<i64>().is_ok());
    if !is_function {
        if piped.is_some() {
            return Err(format!(
                "template: can't give argument to non-function {name}"
            ));
        }
        let cur = operand(name, v)?;
        // A method with one argument: the field's entry of that name.
        return match (toks.len(), &cur) {
            (1, _) => Ok(cur),
            (2, Value::Object(m)) if toks[1].starts_with('"') => Ok(m
                .get(toks[1].trim_matches('"'))
                .cloned()
                .unwrap_or(Value::Null)),
            _ => Err(format!("template: cannot call {}", toks.join(" "))),
        };
    }
    let mut args = toks[1..]
        .iter()
        .map(|t| operand(t, v))
        .collect::<Result<Vec<Value>, String>>()?;
    args.extend(piped);
    let want = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "template: wrong number of args for {name}: want {n} got {}",
                args.len()
            ))
        }
    };
    let text = |a: &Value| display(a);
    let number = |a: &Value| -> Result<i64, String> {
        a.as_i64()
            .ok_or_else(|| format!("template: {name}: {} is not a number", display(a)))
    };
    match name {
        "json" => {
            want(1)?;
            Ok(Value::String(
                serde_json::to_string(&args[0]).unwrap_or_default(),
            ))
        }
        "index" => {
            if args.len() < 2 {
                return Err("template: index needs a value and a key".into());
            }
            let mut cur = args[0].clone();
            for key in &args[1..] {
                cur = match (&cur, key) {
                    (Value::Object(m), Value::String(k)) => {
                        m.get(k).cloned().unwrap_or(Value::Null)
                    }
                    (Value::Array(a), k) => {
                        let i = k
                            .as_u64()
                            .or_else(|| k.as_str().and_then(|s| s.parse().ok()))
                            .ok_or_else(|| {
                                format!("template: index of {} with {}", display(&cur), display(k))
                            })?;
                        a.get(i as usize).cloned().unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                };
            }
            Ok(cur)
        }
        "lower" | "upper" | "title" => {
            want(1)?;
            let s = text(&args[0]);
            Ok(Value::String(match name {
                "lower" => s.to_lowercase(),
                "upper" => s.to_uppercase(),
                _ => title(&s),
            }))
        }
        "join" => {
            want(2)?;
            let Value::Array(items) = &args[0] else {
                return Err(format!(
                    "template: join: {} is not a list",
                    display(&args[0])
                ));
            };
            let sep = text(&args[1]);
            Ok(Value::String(
                items.iter().map(display).collect::<Vec<_>>().join(&sep),
            ))
        }
        "split" => {
            want(2)?;
            let (s, sep) = (text(&args[0]), text(&args[1]));
            Ok(Value::Array(if sep.is_empty() {
                s.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                s.split(sep.as_str())
                    .map(|p| Value::String(p.to_string()))
                    .collect()
            }))
        }
        "truncate" => {
            want(2)?;
            let n = usize::try_from(number(&args[1])?).unwrap_or(0);
            Ok(Value::String(text(&args[0]).chars().take(n).collect()))
        }
        "pad" => {
            want(3)?;
            let (before, after) = (number(&args[1])?, number(&args[2])?);
            let sp = |n: i64| " ".repeat(usize::try_from(n).unwrap_or(0).min(4096));
            Ok(Value::String(format!(
                "{}{}{}",
                sp(before),
                text(&args[0]),
                sp(after)
            )))
        }
        other => Err(format!("template: function \"{other}\" not defined")),
    }
}

/// Go's `strings.Title`: the first letter of every word in upper case.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphanumeric() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut q = false;
    for c in s.chars() {
        match c {
            '"' => {
                q = !q;
                cur.push(c);
            }
            ' ' if !q => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// How Go's text/template prints a value.
fn display(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(display).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", display(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(70), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(1_234_567), "1.23MB");
        assert_eq!(human_size(4_860), "4.86kB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(binary_size(1536 * 1024), "1.5MiB");
        assert_eq!(binary_size(25_274_722_304), "23.54GiB");
        assert_eq!(binary_size(132 * 1024), "132KiB");
    }

    #[test]
    fn templates() {
        let v = json!({"State": {"Pid": 42, "Status": "running"}, "Name": "/web",
                       "Config": {"Labels": {"a": "b"}}, "Mounts": [{"Destination": "/x"}, {"Destination": "/y"}]});
        assert_eq!(template("{{.State.Pid}}", &v).unwrap(), "42");
        assert_eq!(
            template("{{ .Name }} is {{.State.Status}}", &v).unwrap(),
            "/web is running"
        );
        assert_eq!(
            template("{{json .Config.Labels}}", &v).unwrap(),
            "{\"a\":\"b\"}"
        );
        assert_eq!(template("{{index .Config.Labels \"a\"}}", &v).unwrap(), "b");
        assert_eq!(
            template("{{range .Mounts}}{{.Destination}} {{end}}", &v).unwrap(),
            "/x /y "
        );
        assert_eq!(template("{{.Nope}}", &v).unwrap(), "<no value>");
        assert!(template("{{bogus .X}}", &v).is_err());
    }

    /// docker's template functions (cli/templates), directly and in pipelines.
    #[test]
    fn template_functions() {
        let v = json!({"Args": ["a", "b", "c"], "Name": "hello world", "Id": "0123456789abcdef",
                       "Tags": "x:1,y:2", "Mounts": [{"Destination": "/x"}]});
        let t = |s: &str| template(s, &v);
        assert_eq!(t("{{join .Args \", \"}}").unwrap(), "a, b, c");
        assert_eq!(t("{{.Args | json}}").unwrap(), "[\"a\",\"b\",\"c\"]");
        assert_eq!(t("{{title .Name}}").unwrap(), "Hello World");
        assert_eq!(t("{{.Name | upper}}").unwrap(), "HELLO WORLD");
        assert_eq!(t("{{truncate .Id 12}}").unwrap(), "0123456789ab");
        assert_eq!(t("{{split .Tags \",\"}}").unwrap(), "[x:1 y:2]");
        assert_eq!(
            t("{{range split .Tags \",\"}}<{{.}}>{{end}}").unwrap(),
            "<x:1><y:2>"
        );
        assert_eq!(t("{{pad .Args 1 2}}").unwrap(), " [a b c]  ");
        assert_eq!(
            t("{{index .Mounts 0 | json}}").unwrap(),
            "{\"Destination\":\"/x\"}"
        );
        assert_eq!(t("{{json .}}").unwrap(), v.to_string());
        // Wrong arguments are errors that say so, never output.
        assert!(t("{{join .Name \",\"}}")
            .unwrap_err()
            .contains("not a list"));
        assert!(t("{{truncate .Id}}")
            .unwrap_err()
            .contains("wrong number of args"));
        assert!(t("{{truncate .Id \"x\"}}")
            .unwrap_err()
            .contains("not a number"));
        assert!(t("{{.Name | .Id}}").unwrap_err().contains("non-function"));
    }

    #[test]
    fn tables_align() {
        let t = table(&[
            vec!["A".into(), "BB".into(), "C".into()],
            vec!["long".into(), "x".into(), "y".into()],
        ]);
        assert_eq!(t, "A      BB   C\nlong   x    y\n");
    }
}
