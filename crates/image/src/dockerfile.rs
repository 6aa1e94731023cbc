//! Dockerfile parsing (directives, continuations, comments, flags, JSON exec form) and
//! docker's variable substitution rules.

use crate::error::{ImageError, Result};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// The name used in error messages (`Dockerfile`).
    pub file: String,
    /// The escape character (`\` or `` ` `` from the `# escape=` directive).
    pub escape: char,
    pub instructions: Vec<Instruction>,
}

/// One instruction (a logical line).
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// Upper-case keyword (`RUN`).
    pub keyword: String,
    /// Leading `--name=value` flags (value empty when there was no `=`).
    pub flags: Vec<(String, String)>,
    /// The arguments after the flags, continuation lines joined, trimmed.
    pub args: String,
    /// The arguments as a JSON string array (exec form), if they are one.
    pub json: Option<Vec<String>>,
    /// The logical line as written (keyword and arguments), for messages.
    pub original: String,
    /// Here-documents (`<<EOF` ... `EOF`) of RUN/COPY/ADD, in order.
    pub heredocs: Vec<Heredoc>,
}

/// A here-document body.
#[derive(Debug, Clone, PartialEq)]
pub struct Heredoc {
    /// The delimiter word (`EOF`).
    pub name: String,
    /// The body, each line ending in `\n` (leading tabs removed for `<<-`).
    pub content: String,
    /// Whether the delimiter was unquoted (then COPY expands variables in the body).
    pub expand: bool,
}

/// A here-document marker word: `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'` →
/// (name, strip tabs, quoted).
pub(crate) fn heredoc_marker(word: &str) -> Option<(String, bool, bool)> {
    let rest = word.strip_prefix("<<")?;
    let (rest, strip) = match rest.strip_prefix('-') {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let (name, quoted) = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => (rest.strip_prefix(q)?.strip_suffix(q)?, true),
        _ => (rest, false),
    };
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then(|| (name.to_string(), strip, quoted))
}

const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];
const JSON_FORM: &[&str] = &["RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"];
const TAKES_FLAGS: &[&str] = &["FROM", "RUN", "COPY", "ADD", "HEALTHCHECK"];

impl Instruction {
    /// The value of flag `--name`, if given.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_error(file: &str, line: usize, message: impl Into<String>) -> ImageError {
    ImageError::Dockerfile {
        file: file.to_string(),
        line,
        message: message.into(),
    }
}

/// Parses a Dockerfile's text; `file` names it in errors (`Dockerfile:7: unknown instruction: FOO`).
pub fn parse_dockerfile(text: &str, file: &str) -> Result<Dockerfile> {
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut i = 0;
    // Parser directives: only at the very top, before any other line.
    while i < lines.len() {
        let l = lines[i].trim();
        let Some(body) = l.strip_prefix('#') else {
            break;
        };
        let Some((k, v)) = body.split_once('=') else {
            break;
        };
        let k = k.trim().to_ascii_lowercase();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
            break;
        }
        if k == "escape" {
            escape = match v.trim() {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(parse_error(
                        file,
                        i + 1,
                        format!(
                            "invalid escape token '{other}' does not validate: must be ` or \\"
                        ),
                    ))
                }
            };
        }
        i += 1;
    }
    let mut instructions = Vec::new();
    let mut current: Option<(usize, String)> = None;
    while i < lines.len() {
        let line_no = i + 1;
        let raw = lines[i].strip_suffix('\r').unwrap_or(lines[i]);
        i += 1;
        let trimmed = raw.trim_start();
        if trimmed.starts_with('#') || (trimmed.trim().is_empty()) {
            // Comments and empty lines, also inside continuations.
            continue;
        }
        let body = raw.trim_end();
        let (piece, continues) = match body.strip_suffix(escape) {
            Some(p) => (p, true),
            None => (raw, false),
        };
        match &mut current {
            Some((_, text)) => text.push_str(piece),
            None => current = Some((line_no, piece.to_string())),
        }
        if !continues {
            if let Some((start, text)) = current.take() {
                let mut ins = parse_instruction(file, start, &text)?;
                if matches!(ins.keyword.as_str(), "RUN" | "COPY" | "ADD") && ins.json.is_none() {
                    for word in split_words(&ins.args, escape) {
                        let Some((name, strip, quoted)) = heredoc_marker(&word) else {
                            continue;
                        };
                        let mut content = String::new();
                        loop {
                            let Some(raw) = lines.get(i) else {
                                return Err(parse_error(
                                    file,
                                    start,
                                    format!("unterminated here-document: no line {name} before the end of the file"),
                                ));
                            };
                            i += 1;
                            let raw = raw.strip_suffix('\r').unwrap_or(raw);
                            let body = if strip {
                                raw.trim_start_matches('\t')
                            } else {
                                raw
                            };
                            if body == name {
                                break;
                            }
                            content.push_str(body);
                            content.push('\n');
                        }
                        ins.heredocs.push(Heredoc {
                            name,
                            content,
                            expand: !quoted,
                        });
                    }
                }
                instructions.push(ins);
            }
        }
    }
    if let Some((start, text)) = current.take() {
        instructions.push(parse_instruction(file, start, &text)?);
    }
    let mut seen_from = false;
    for ins in &instructions {
        if ins.keyword == "FROM" {
            seen_from = true;
        } else if !seen_from && ins.keyword != "ARG" {
            return Err(parse_error(
                file,
                ins.line,
                format!(
                    "{} before the first FROM: only ARG may come before FROM",
                    ins.keyword
                ),
            ));
        }
    }
    if !seen_from {
        return Err(parse_error(
            file,
            lines.len().max(1),
            "no FROM instruction: the Dockerfile has no build stage",
        ));
    }
    Ok(Dockerfile {
        file: file.to_string(),
        escape,
        instructions,
    })
}

/// Parses one instruction line (no continuation handling), e.g. a `--change` value.
pub(crate) fn parse_line(file: &str, line: usize, text: &str) -> Result<Instruction> {
    parse_instruction(file, line, text)
}

fn parse_instruction(file: &str, line: usize, text: &str) -> Result<Instruction> {
    let text = text.trim();
    let (word, rest) = match text.find(char::is_whitespace) {
        Some(p) => (&text[..p], text[p..].trim_start()),
        None => (text, ""),
    };
    let keyword = word.to_ascii_uppercase();
    if !KEYWORDS.contains(&keyword.as_str()) {
        return Err(parse_error(
            file,
            line,
            format!("unknown instruction: {word}"),
        ));
    }
    let mut flags = Vec::new();
    let mut args = rest;
    if TAKES_FLAGS.contains(&keyword.as_str()) {
        while let Some(f) = args.strip_prefix("--") {
            let end = f.find(char::is_whitespace).unwrap_or(f.len());
            let tok = &f[..end];
            if tok.is_empty() {
                break;
            }
            let (n, v) = tok.split_once('=').unwrap_or((tok, ""));
            flags.push((n.to_ascii_lowercase(), v.to_string()));
            args = f[end..].trim_start();
        }
    }
    let args = args.trim().to_string();
    if args.is_empty() {
        return Err(parse_error(
            file,
            line,
            format!("{keyword} requires at least one argument"),
        ));
    }
    let json = if JSON_FORM.contains(&keyword.as_str()) && args.starts_with('[') {
        serde_json::from_str::<Vec<String>>(&args).ok()
    } else {
        None
    };
    if keyword == "SHELL" && json.is_none() {
        return Err(parse_error(
            file,
            line,
            "SHELL requires the arguments to be in JSON form",
        ));
    }
    Ok(Instruction {
        line,
        keyword,
        flags,
        args,
        json,
        original: text.to_string(),
        heredocs: Vec::new(),
    })
}

/// Docker's shell-like word processing: quotes, escapes and `$VAR` substitution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lexer {
    pub escape: char,
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Lexer {
    /// Substitutes variables and removes quotes in one word (spaces are kept).
    pub(crate) fn process_word(
        &self,
        word: &str,
        env: Lookup,
    ) -> std::result::Result<String, String> {
        let chars: Vec<char> = word.chars().collect();
        let mut pos = 0;
        self.process(&chars, &mut pos, env, None)
    }

    /// Splits `s` into words at unquoted whitespace, then processes each word.
    pub(crate) fn process_words(
        &self,
        s: &str,
        env: Lookup,
    ) -> std::result::Result<Vec<String>, String> {
        split_words(s, self.escape)
            .iter()
            .map(|w| self.process_word(w, env))
            .collect()
    }

    fn process(
        &self,
        c: &[char],
        pos: &mut usize,
        env: Lookup,
        stop: Option<char>,
    ) -> std::result::Result<String, String> {
        let mut out = String::new();
        while *pos < c.len() {
            let ch = c[*pos];
            if Some(ch) == stop {
                return Ok(out);
            }
            *pos += 1;
            if ch == self.escape {
                match c.get(*pos) {
                    Some(&n) => {
                        out.push(n);
                        *pos += 1;
                    }
                    None => out.push(ch),
                }
            } else if ch == '\'' {
                loop {
                    match c.get(*pos) {
                        None => return Err(
                            "unexpected end of statement while looking for matching single-quote"
                                .into(),
                        ),
                        Some('\'') => {
                            *pos += 1;
                            break;
                        }
                        Some(&x) => {
                            out.push(x);
                            *pos += 1;
                        }
                    }
                }
            } else if ch == '"' {
                loop {
                    match c.get(*pos) {
                        None => return Err(
                            "unexpected end of statement while looking for matching double-quote"
                                .into(),
                        ),
                        Some('"') => {
                            *pos += 1;
                            break;
                        }
                        Some('$') => {
                            *pos += 1;
                            out.push_str(&self.variable(c, pos, env)?);
                        }
                        Some(&x) if x == self.escape => match c.get(*pos + 1) {
                            Some(&n) if n == '"' || n == '$' || n == self.escape => {
                                out.push(n);
                                *pos += 2;
                            }
                            _ => {
                                out.push(x);
                                *pos += 1;
                            }
                        },
                        Some(&x) => {
                            out.push(x);
                            *pos += 1;
                        }
                    }
                }
            } else if ch == '$' {
                out.push_str(&self.variable(c, pos, env)?);
            } else {
                out.push(ch);
            }
        }
        if stop.is_some() {
            return Err("missing '}' in variable substitution".into());
        }
        Ok(out)
    }

    /// After a `$`: `NAME`, `{NAME}`, `{NAME:-word}`, `{NAME-word}`, `{NAME:+word}`,
    /// `{NAME+word}`, `{NAME:?word}`, `{NAME?word}`.
    fn variable(
        &self,
        c: &[char],
        pos: &mut usize,
        env: Lookup,
    ) -> std::result::Result<String, String> {
        let is_name = |x: char| x.is_ascii_alphanumeric() || x == '_';
        match c.get(*pos) {
            Some('{') => {
                *pos += 1;
                let start = *pos;
                while *pos < c.len() && is_name(c[*pos]) {
                    *pos += 1;
                }
                let name: String = c[start..*pos].iter().collect();
                if name.is_empty() {
                    return Err("bad substitution: empty variable name".into());
                }
                match c.get(*pos) {
                    Some('}') => {
                        *pos += 1;
                        Ok(env(&name).unwrap_or_default())
                    }
                    Some(&m) => {
                        let colon = m == ':';
                        if colon {
                            *pos += 1;
                        }
                        let op = match c.get(*pos) {
                            Some(&o) if o == '-' || o == '+' || o == '?' => o,
                            _ => return Err(format!("unsupported modifier in ${{{name}...}}: only :-, :+, :?, -, +, ? are supported")),
                        };
                        *pos += 1;
                        let word = self.process(c, pos, env, Some('}'))?;
                        *pos += 1; // the '}'
                        let val = env(&name);
                        let set = match &val {
                            Some(v) => !(colon && v.is_empty()),
                            None => false,
                        };
                        Ok(match op {
                            '-' => {
                                if set {
                                    val.unwrap_or_default()
                                } else {
                                    word
                                }
                            }
                            '+' => {
                                if set {
                                    word
                                } else {
                                    String::new()
                                }
                            }
                            _ => {
                                if set {
                                    val.unwrap_or_default()
                                } else {
                                    let msg = if word.is_empty() {
                                        "is not allowed to be unset".to_string()
                                    } else {
                                        word
                                    };
                                    return Err(format!("{name}: {msg}"));
                                }
                            }
                        })
                    }
                    None => Err("missing '}' in variable substitution".into()),
                }
            }
            Some(&x) if is_name(x) => {
                let start = *pos;
                while *pos < c.len() && is_name(c[*pos]) {
                    *pos += 1;
                }
                let name: String = c[start..*pos].iter().collect();
                Ok(env(&name).unwrap_or_default())
            }
            _ => Ok("$".to_string()),
        }
    }
}

/// Splits at unquoted, unescaped whitespace; quotes and escapes stay in the words.
pub(crate) fn split_words(s: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(ch);
                if ch == escape && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if ch == q {
                    quote = None;
                }
            }
            None => {
                if ch.is_whitespace() {
                    if in_word {
                        words.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                    continue;
                }
                in_word = true;
                cur.push(ch);
                if ch == escape {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if ch == '"' || ch == '\'' {
                    quote = Some(ch);
                }
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Parses `ENV`/`LABEL`/`ARG`-style `k=v k2=v2` (or legacy `k v`) into processed pairs;
/// values are substituted with `env` (the environment before this instruction).
pub(crate) fn parse_name_values(
    lexer: &Lexer,
    args: &str,
    env: Lookup,
    legacy_ok: bool,
) -> std::result::Result<Vec<(String, Option<String>)>, String> {
    let words = split_words(args, lexer.escape);
    if words.is_empty() {
        return Err("requires at least one argument".into());
    }
    if !words[0].contains('=') && legacy_ok {
        let key = lexer.process_word(&words[0], env)?;
        let rest = args.trim_start()[words[0].len()..].trim();
        if rest.is_empty() {
            return Ok(vec![(key, None)]);
        }
        return Ok(vec![(key, Some(lexer.process_word(rest, env)?))]);
    }
    let mut out = Vec::new();
    for w in words {
        match w.split_once('=') {
            Some((k, v)) => {
                let k = lexer.process_word(k, env)?;
                if k.is_empty() {
                    return Err("names can not be blank".into());
                }
                out.push((k, Some(lexer.process_word(v, env)?)));
            }
            None => {
                if legacy_ok {
                    return Err(format!(
                        "syntax error - can't find = in {w:?}. Must be of the form: name=value"
                    ));
                }
                out.push((lexer.process_word(&w, env)?, None));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "A" => Some("a".into()),
            "E" => Some(String::new()),
            "SP" => Some("x y".into()),
            _ => None,
        }
    }

    #[test]
    fn parses_lines_comments_continuations() {
        let df = "# escape=\\\n# a comment\nfrom busybox AS Base\n\nRUN echo a \\\n  # inner comment\n   && echo b\ncmd [\"sh\", \"-c\"]\nCOPY --chown=1:2 --from=base a b /x/\nENTRYPOINT [broken\n";
        let d = parse_dockerfile(df, "Dockerfile").unwrap();
        let k: Vec<_> = d
            .instructions
            .iter()
            .map(|i| (i.keyword.as_str(), i.line))
            .collect();
        assert_eq!(
            k,
            vec![
                ("FROM", 3),
                ("RUN", 5),
                ("CMD", 8),
                ("COPY", 9),
                ("ENTRYPOINT", 10)
            ]
        );
        assert_eq!(d.instructions[1].args, "echo a    && echo b");
        assert_eq!(
            d.instructions[2].json,
            Some(vec!["sh".to_string(), "-c".to_string()])
        );
        assert_eq!(d.instructions[3].flag("chown"), Some("1:2"));
        assert_eq!(d.instructions[3].flag("from"), Some("base"));
        assert_eq!(d.instructions[3].args, "a b /x/");
        assert_eq!(d.instructions[4].json, None);
    }

    #[test]
    fn heredocs() {
        let df = "FROM x\nRUN <<EOF\necho a\n# not a comment\n\nEOF\nCOPY <<-\"A\" <<B /dst/\n\tone\n\tA\ntwo $X\nB\nCMD x\n";
        let d = parse_dockerfile(df, "Dockerfile").unwrap();
        let k: Vec<_> = d
            .instructions
            .iter()
            .map(|i| (i.keyword.as_str(), i.line))
            .collect();
        assert_eq!(k, vec![("FROM", 1), ("RUN", 2), ("COPY", 7), ("CMD", 12)]);
        assert_eq!(
            d.instructions[1].heredocs[0].content,
            "echo a\n# not a comment\n\n"
        );
        let h = &d.instructions[2].heredocs;
        assert_eq!(
            (h[0].name.as_str(), h[0].content.as_str(), h[0].expand),
            ("A", "one\n", false)
        );
        assert_eq!(
            (h[1].name.as_str(), h[1].content.as_str(), h[1].expand),
            ("B", "two $X\n", true)
        );
        let e = parse_dockerfile("FROM x\nRUN <<EOF\necho\n", "Dockerfile").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Dockerfile:2: unterminated here-document"),
            "{e}"
        );
        assert_eq!(heredoc_marker("<<'E_1'"), Some(("E_1".into(), false, true)));
        assert_eq!(heredoc_marker("<<<x"), None);
    }

    #[test]
    fn escape_directive() {
        let d = parse_dockerfile(
            "# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo\n",
            "Dockerfile",
        )
        .unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(d.instructions[1].args, "dir c:\\   && echo");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse_dockerfile("FROM x\n\n# c\nRUN a\nFOO bar\n", "Dockerfile").unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile:5: unknown instruction: FOO");
        let e = parse_dockerfile("FROM x\nCOPY\n", "Dockerfile").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Dockerfile:2: COPY requires at least one argument"
        );
        let e = parse_dockerfile("RUN x\nFROM y\n", "Dockerfile").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("Dockerfile:1: RUN before the first FROM"));
        let e = parse_dockerfile("FROM x\nSHELL sh\n", "Dockerfile").unwrap_err();
        assert!(e.to_string().starts_with("Dockerfile:2: SHELL requires"));
    }

    #[test]
    fn substitution() {
        let l = Lexer { escape: '\\' };
        let p = |s: &str| l.process_word(s, &env).unwrap();
        assert_eq!(p("$A"), "a");
        assert_eq!(p("${A}b"), "ab");
        assert_eq!(p("$Ab"), "");
        assert_eq!(p("${U:-def}"), "def");
        assert_eq!(p("${E:-def}"), "def");
        assert_eq!(p("${E-def}"), "");
        assert_eq!(p("${A:+alt}"), "alt");
        assert_eq!(p("${U:+alt}"), "");
        assert_eq!(p("${U:-${A}x}"), "ax");
        assert_eq!(p("\\$A"), "$A");
        assert_eq!(p("'$A'"), "$A");
        assert_eq!(p("\"$A b\""), "a b");
        assert_eq!(p("\"\\$A\""), "$A");
        assert_eq!(p("a$"), "a$");
        assert_eq!(p("$ A"), "$ A");
        assert!(l.process_word("${A", &env).is_err());
        assert!(l
            .process_word("${U:?need it}", &env)
            .unwrap_err()
            .contains("need it"));
        assert_eq!(
            l.process_words("a \"b c\" $SP", &env).unwrap(),
            vec!["a", "b c", "x y"]
        );
    }

    #[test]
    fn name_values() {
        let l = Lexer { escape: '\\' };
        let kv = parse_name_values(&l, "A=1 B=\"two words\" C=$A", &env, true).unwrap();
        assert_eq!(
            kv,
            vec![
                ("A".into(), Some("1".into())),
                ("B".into(), Some("two words".into())),
                ("C".into(), Some("a".into()))
            ]
        );
        let kv = parse_name_values(&l, "K some value $A", &env, true).unwrap();
        assert_eq!(kv, vec![("K".into(), Some("some value a".into()))]);
        assert!(parse_name_values(&l, "A=1 B", &env, true).is_err());
    }
}
