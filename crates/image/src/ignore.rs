//! `.dockerignore` patterns (Go `filepath.Match` syntax plus `**` and `!` exceptions) and
//! the glob matcher COPY sources use.

use crate::error::{IoContext, Result};
use std::path::Path;

/// The compiled patterns of a `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher {
    /// (is an exception `!pattern`, pattern chars), in file order.
    patterns: Vec<(bool, Vec<char>)>,
}

/// Go's `filepath.Clean` for slash paths, without a leading `/`.
pub(crate) fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

impl IgnoreMatcher {
    /// Reads `<context>/.dockerignore` (no file: nothing is ignored).
    pub fn from_context(context: &Path) -> Result<Self> {
        let p = context.join(".dockerignore");
        match std::fs::read_to_string(&p) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).ctx("reading", &p),
        }
    }

    /// Parses `.dockerignore` text.
    pub fn parse(text: &str) -> Self {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let mut l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let exception = l.starts_with('!');
            if exception {
                l = l[1..].trim();
            }
            let cleaned = clean_path(l);
            if cleaned.is_empty() {
                continue;
            }
            patterns.push((exception, cleaned.chars().collect()));
        }
        IgnoreMatcher { patterns }
    }

    /// Whether any `!` exception exists (then excluded dirs must still be walked).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|(e, _)| *e)
    }

    /// Whether the context-relative path `rel` (slash separated) is excluded: the last
    /// pattern matching it or one of its parent directories decides.
    pub fn is_excluded(&self, rel: &str) -> bool {
        let rel = clean_path(rel);
        if rel.is_empty() {
            return false;
        }
        let text: Vec<char> = rel.chars().collect();
        let mut parents = Vec::new();
        for (i, c) in text.iter().enumerate() {
            if *c == '/' {
                parents.push(&text[..i]);
            }
        }
        let mut excluded = false;
        for (exception, pat) in &self.patterns {
            let hit =
                glob_match(pat, &text, true) || parents.iter().any(|p| glob_match(pat, p, true));
            if hit {
                excluded = !exception;
            }
        }
        excluded
    }
}

/// Matches `text` against a Go `filepath.Match` pattern (`*`, `?`, `[...]`, `\` escapes;
/// `*` does not cross `/`); with `double_star`, `**` matches across directories.
pub(crate) fn glob_match(p: &[char], t: &[char], double_star: bool) -> bool {
    if p.is_empty() {
        return t.is_empty();
    }
    match p[0] {
        '*' if double_star && p.get(1) == Some(&'*') => {
            let rest = &p[2..];
            if rest.first() == Some(&'/') {
                let rest = &rest[1..];
                if glob_match(rest, t, true) {
                    return true;
                }
                (0..t.len()).any(|i| t[i] == '/' && glob_match(rest, &t[i + 1..], true))
            } else {
                (0..=t.len()).any(|i| glob_match(rest, &t[i..], true))
            }
        }
        '*' => {
            let rest = &p[1..];
            for i in 0..=t.len() {
                if glob_match(rest, &t[i..], double_star) {
                    return true;
                }
                if i < t.len() && t[i] == '/' {
                    break;
                }
            }
            false
        }
        '?' => !t.is_empty() && t[0] != '/' && glob_match(&p[1..], &t[1..], double_star),
        '[' => {
            if t.is_empty() || t[0] == '/' {
                return false;
            }
            let mut i = 1;
            let negate = matches!(p.get(1), Some('^') | Some('!'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            loop {
                let Some(&c) = p.get(i) else { return false };
                if c == ']' && !first {
                    i += 1;
                    break;
                }
                first = false;
                let (lo, next) = if c == '\\' {
                    match p.get(i + 1) {
                        Some(&e) => (e, i + 2),
                        None => return false,
                    }
                } else {
                    (c, i + 1)
                };
                if p.get(next) == Some(&'-') && p.get(next + 1).is_some_and(|&x| x != ']') {
                    let (hi, after) = if p[next + 1] == '\\' {
                        match p.get(next + 2) {
                            Some(&e) => (e, next + 3),
                            None => return false,
                        }
                    } else {
                        (p[next + 1], next + 2)
                    };
                    if lo <= t[0] && t[0] <= hi {
                        matched = true;
                    }
                    i = after;
                } else {
                    if lo == t[0] {
                        matched = true;
                    }
                    i = next;
                }
            }
            matched != negate && glob_match(&p[i..], &t[1..], double_star)
        }
        '\\' if p.len() > 1 => {
            !t.is_empty() && t[0] == p[1] && glob_match(&p[2..], &t[1..], double_star)
        }
        c => !t.is_empty() && t[0] == c && glob_match(&p[1..], &t[1..], double_star),
    }
}

/// Whether a string has glob metacharacters.
pub(crate) fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        glob_match(
            &p.chars().collect::<Vec<_>>(),
            &t.chars().collect::<Vec<_>>(),
            true,
        )
    }

    #[test]
    fn glob() {
        assert!(m("*.txt", "a.txt"));
        assert!(!m("*.txt", "d/a.txt"));
        assert!(m("**/*.txt", "a.txt"));
        assert!(m("**/*.txt", "d/e/a.txt"));
        assert!(m("d/**", "d/e/f"));
        assert!(m("a?c", "abc"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[^a-c]x", "bx"));
        assert!(m("\\*", "*"));
    }

    #[test]
    fn dockerignore_rules() {
        let i =
            IgnoreMatcher::parse("# comment\n*.log\n/build\nsecret/**\n!secret/keep.txt\n**/tmp\n");
        assert!(i.is_excluded("x.log"));
        assert!(!i.is_excluded("d/x.log"));
        assert!(i.is_excluded("build"));
        assert!(i.is_excluded("build/out/a.o"));
        assert!(i.is_excluded("secret/a"));
        assert!(!i.is_excluded("secret/keep.txt"));
        assert!(i.is_excluded("a/b/tmp/c"));
        assert!(!i.is_excluded("src/main.rs"));
        assert!(i.has_exceptions());
    }
}
