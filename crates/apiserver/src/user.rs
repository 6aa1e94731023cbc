//! Who made a request, and the static token file that names some users.

use std::collections::HashMap;

/// Who made a request (from its client certificate or bearer token).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    pub uid: String,
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

/// Parses a static token file (kube-apiserver's `--token-auth-file` CSV):
/// `token,user,uid[,"group1,group2"]`, one per line; `#` starts a comment line.
pub fn parse_token_file(text: &str) -> Result<HashMap<String, User>, String> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Split on commas outside double quotes.
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() < 3 || fields[0].is_empty() || fields[1].is_empty() {
            return Err(format!("line {}: want token,user,uid[,\"groups\"]", i + 1));
        }
        let groups = fields
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        out.insert(
            fields[0].trim().to_string(),
            User {
                name: fields[1].trim().to_string(),
                groups,
                uid: fields[2].trim().to_string(),
                ..Default::default()
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let t = parse_token_file("# comment\nabc,alice,1,\"dev,ops\"\nxyz,bob,2\n").unwrap();
        assert_eq!(
            t["abc"],
            User {
                name: "alice".into(),
                groups: vec!["dev".into(), "ops".into()],
                uid: "1".into(),
                ..Default::default()
            }
        );
        assert_eq!(t["xyz"].groups, Vec::<String>::new());
        assert!(parse_token_file("onlytoken\n").is_err());
    }
}
