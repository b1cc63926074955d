//! A minimal XML tree over xmlparser's tokens, for checking the JUnit files
//! labrun writes: elements, attributes (entities decoded) and text;
//! mismatched or unclosed tags are errors. (Also used by the unit tests of
//! `src/exercise/results.rs`.)

#[derive(Debug, Default)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&Element> {
        self.children.iter().filter(|c| c.name == name).collect()
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(';').expect("entity ends with ;") + i;
        let entity = &rest[i + 1..end];
        out.push(match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            e if e.starts_with("#x") => {
                char::from_u32(u32::from_str_radix(&e[2..], 16).unwrap()).unwrap()
            }
            e if e.starts_with('#') => char::from_u32(e[1..].parse().unwrap()).unwrap(),
            e => panic!("unknown entity &{e};"),
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Parses `text` into its root element.
pub fn parse(text: &str) -> Result<Element, String> {
    use xmlparser::{ElementEnd, Token, Tokenizer};
    let mut stack: Vec<Element> = vec![Element::default()];
    for token in Tokenizer::from(text) {
        match token.map_err(|e| e.to_string())? {
            Token::ElementStart { local, .. } => stack.push(Element {
                name: local.as_str().to_string(),
                ..Default::default()
            }),
            Token::Attribute { local, value, .. } => stack
                .last_mut()
                .unwrap()
                .attrs
                .push((local.as_str().to_string(), unescape(value.as_str()))),
            Token::ElementEnd { end, .. } => match end {
                ElementEnd::Open => {}
                ElementEnd::Close(..) | ElementEnd::Empty if stack.len() < 2 => {
                    return Err("end tag without a start".into());
                }
                ElementEnd::Close(_, local) => {
                    let e = stack.pop().unwrap();
                    if e.name != local.as_str() {
                        return Err(format!("</{}> closes <{}>", local.as_str(), e.name));
                    }
                    stack.last_mut().unwrap().children.push(e);
                }
                ElementEnd::Empty => {
                    let e = stack.pop().unwrap();
                    stack.last_mut().unwrap().children.push(e);
                }
            },
            Token::Text { text } | Token::Cdata { text, .. } => stack
                .last_mut()
                .unwrap()
                .text
                .push_str(&unescape(text.as_str())),
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err(format!("<{}> is never closed", stack.last().unwrap().name));
    }
    let mut doc = stack.pop().unwrap();
    if doc.children.len() != 1 {
        return Err("a document has exactly one root element".into());
    }
    Ok(doc.children.remove(0))
}
