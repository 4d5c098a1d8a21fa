//! YAML text to typed objects: the reader behind manifest folders.
//!
//! Built on yaml-rust2's event parser. Each document's events are collected
//! (aliases expanded, duplicate keys refused), then read straight into the
//! caller's type through serde, with no tree in between; [`Document::field`]
//! looks at a scalar (`kind`, `metadata.name`) before the type is chosen.
//!
//! Scalars follow the YAML 1.2 core schema: `true`/`false`, `null`/`~`,
//! decimal, `0o` and `0x` integers, and floats; anything else, and every
//! quoted scalar, is a string (`yes` is the string "yes", `"8080"` stays
//! text). Errors carry the line and column.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde_json::Value;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Largest size of one document once aliases are expanded, counted as
/// events plus scalar bytes: room for any real manifest, while a document of
/// nested aliases ("billion laughs") stops with an error early.
pub const MAX_EXPANDED: usize = 64 << 20;

const NON_SCALAR_KEY: &str = "a mapping key must be a scalar, not a sequence or mapping";

/// Why a YAML text could not be read, or a document not typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// Line, from 1 (0 when unknown).
    pub line: usize,
    /// Column, from 1 (0 when unknown).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl YamlError {
    fn at(mark: Marker, message: impl Into<String>) -> Self {
        Self {
            line: mark.line(),
            column: mark.col() + 1,
            message: message.into(),
        }
    }

    /// Adds a location to an error that has none (the innermost one wins).
    fn or_at(mut self, mark: Marker) -> Self {
        if self.line == 0 {
            self.line = mark.line();
            self.column = mark.col() + 1;
        }
        self
    }
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(
                f,
                "{} at line {} column {}",
                self.message, self.line, self.column
            )
        }
    }
}

impl std::error::Error for YamlError {}

impl de::Error for YamlError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            line: 0,
            column: 0,
            message: msg.to_string(),
        }
    }
}

/// One document's events, aliases expanded.
#[derive(Debug, Clone)]
pub struct Document {
    events: Vec<(Event, Marker)>,
    /// For each event that starts a collection, how many items or entries
    /// it holds (0 for other events): lists are then allocated at their
    /// size, not grown by doubling and kept with spare room.
    counts: Vec<u32>,
}

impl Document {
    /// The scalar at `path` (mapping keys from the top), as written.
    pub fn field(&self, path: &[&str]) -> Option<&str> {
        let mut pos = 0;
        for (depth, key) in path.iter().enumerate() {
            if !matches!(self.events.get(pos)?.0, Event::MappingStart(..)) {
                return None;
            }
            pos += 1;
            loop {
                match &self.events.get(pos)?.0 {
                    Event::Scalar(k, ..) if k == key => {
                        pos += 1;
                        break;
                    }
                    Event::Scalar(..) => pos = node_end(&self.events, pos + 1),
                    _ => return None,
                }
            }
            if depth + 1 == path.len() {
                return match &self.events.get(pos)?.0 {
                    Event::Scalar(value, ..) => Some(value),
                    _ => None,
                };
            }
        }
        None
    }

    /// Reads the document as `T`.
    pub fn deserialize<T: DeserializeOwned>(self) -> Result<T, YamlError> {
        let mut de = Deserializer {
            events: self.events,
            counts: self.counts,
            pos: 0,
        };
        let value = T::deserialize(&mut de);
        recycle(de.events, de.counts);
        value
    }

    /// Whether the document holds nothing (empty, or a lone null).
    fn is_null(&self) -> bool {
        match self.events.as_slice() {
            [] => true,
            [(Event::Scalar(text, style, _, tag), _)] => {
                matches!(scalar(text, *style, tag.as_ref()), Ok(Resolved::Null))
            }
            _ => false,
        }
    }
}

/// The index just past the node starting at `pos`.
fn node_end(events: &[(Event, Marker)], pos: usize) -> usize {
    let mut depth = 0usize;
    let mut i = pos;
    while let Some((event, _)) = events.get(i) {
        i += 1;
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => depth += 1,
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 {
            break;
        }
    }
    i
}

/// An open collection while a document's events are collected.
struct Open {
    mapping: bool,
    start: usize,
    anchor: usize,
    expect_key: bool,
    /// Items so far, in a sequence (a mapping counts its `keys`).
    items: u32,
    /// Event index of each key so far.
    keys: Vec<usize>,
    /// The keys, once there are too many to compare one by one.
    key_set: Option<HashSet<String>>,
}

/// A document's events and their item counts.
type EventLists = (Vec<(Event, Marker)>, Vec<u32>);

thread_local! {
    /// Event lists of documents already read, emptied, for the next ones:
    /// a document's list is a few kilobytes, and allocating one per
    /// document made the allocator sort its free lists on every one.
    static SPARE: std::cell::RefCell<Vec<EventLists>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn recycle(mut events: Vec<(Event, Marker)>, mut counts: Vec<u32>) {
    events.clear();
    counts.clear();
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < 8 {
            spare.push((events, counts));
        }
    });
}

#[derive(Default)]
struct Collector {
    events: Vec<(Event, Marker)>,
    counts: Vec<u32>,
    open: Vec<Open>,
    /// Anchor id and the event range of its node, latest last.
    anchors: Vec<(usize, usize, usize)>,
    size: usize,
}

impl Collector {
    fn new() -> Self {
        let (events, counts) = SPARE.with_borrow_mut(Vec::pop).unwrap_or_default();
        Self {
            events,
            counts,
            ..Self::default()
        }
    }

    fn grow(&mut self, by: usize, mark: Marker) -> Result<(), YamlError> {
        self.size = self.size.saturating_add(by);
        if self.size > MAX_EXPANDED {
            return Err(YamlError::at(
                mark,
                format!("document expands past {MAX_EXPANDED} (events + bytes); too many aliases"),
            ));
        }
        Ok(())
    }

    fn expects_key(&self) -> bool {
        self.open.last().is_some_and(|o| o.mapping && o.expect_key)
    }

    /// Checks a new key of the innermost mapping against its earlier keys.
    fn key(&mut self, index: usize, mark: Marker) -> Result<(), YamlError> {
        let Some(open) = self.open.last_mut() else {
            return Ok(());
        };
        let Event::Scalar(text, ..) = &self.events[index].0 else {
            return Err(YamlError::at(mark, NON_SCALAR_KEY));
        };
        let duplicate = match &mut open.key_set {
            Some(set) => !set.insert(text.clone()),
            None => {
                let seen = open
                    .keys
                    .iter()
                    .any(|&k| matches!(&self.events[k].0, Event::Scalar(t, ..) if t == text));
                if !seen && open.keys.len() >= 32 {
                    let mut set: HashSet<String> = open
                        .keys
                        .iter()
                        .filter_map(|&k| match &self.events[k].0 {
                            Event::Scalar(t, ..) => Some(t.clone()),
                            _ => None,
                        })
                        .collect();
                    set.insert(text.clone());
                    open.key_set = Some(set);
                }
                seen
            }
        };
        if duplicate {
            return Err(YamlError::at(mark, format!("duplicate key {text:?}")));
        }
        open.keys.push(index);
        Ok(())
    }

    /// A whole node was added: the innermost mapping now expects the other
    /// half of an entry.
    fn done(&mut self) {
        let Some(open) = self.open.last_mut() else {
            return;
        };
        if open.mapping {
            open.expect_key = !open.expect_key;
        } else {
            open.items += 1;
        }
    }

    fn push(&mut self, event: Event, mark: Marker) -> Result<(), YamlError> {
        let index = self.events.len();
        match event {
            Event::Scalar(ref text, _, anchor, _) => {
                self.grow(1 + text.len(), mark)?;
                let is_key = self.expects_key();
                self.events.push((event, mark));
                self.counts.push(0);
                if is_key {
                    self.key(index, mark)?;
                }
                if anchor != 0 {
                    self.anchors.push((anchor, index, index + 1));
                }
                self.done();
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.expects_key() {
                    return Err(YamlError::at(mark, NON_SCALAR_KEY));
                }
                self.grow(1, mark)?;
                let mapping = matches!(event, Event::MappingStart(..));
                self.events.push((event, mark));
                self.counts.push(0);
                self.open.push(Open {
                    mapping,
                    start: index,
                    anchor,
                    expect_key: true,
                    items: 0,
                    keys: Vec::new(),
                    key_set: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.grow(1, mark)?;
                self.events.push((event, mark));
                self.counts.push(0);
                let Some(open) = self.open.pop() else {
                    return Err(YamlError::at(mark, "unbalanced collection end"));
                };
                self.counts[open.start] = if open.mapping {
                    u32::try_from(open.keys.len()).unwrap_or(u32::MAX)
                } else {
                    open.items
                };
                if open.anchor != 0 {
                    self.anchors.push((open.anchor, open.start, index + 1));
                }
                self.done();
            }
            Event::Alias(id) => {
                let Some(&(_, start, end)) = self.anchors.iter().rev().find(|(a, ..)| *a == id)
                else {
                    return Err(YamlError::at(mark, "alias to an unknown anchor"));
                };
                let added: usize = self.events[start..end]
                    .iter()
                    .map(|(e, _)| match e {
                        Event::Scalar(t, ..) => 1 + t.len(),
                        _ => 1,
                    })
                    .sum();
                self.grow(added, mark)?;
                let is_key = self.expects_key();
                if is_key && end - start != 1 {
                    return Err(YamlError::at(mark, NON_SCALAR_KEY));
                }
                self.events.extend_from_within(start..end);
                self.counts.extend_from_within(start..end);
                if is_key {
                    self.key(index, mark)?;
                }
                self.done();
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
        Ok(())
    }
}

/// Every document of a YAML text, in order; empty documents are left out.
pub fn documents(text: &str) -> Result<Vec<Document>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut documents = Vec::new();
    let mut current = Collector::new();
    loop {
        let (event, mark) = parser
            .next_token()
            .map_err(|e| YamlError::at(*e.marker(), e.info().to_owned()))?;
        match event {
            Event::StreamEnd => {
                recycle(current.events, current.counts);
                break;
            }
            Event::DocumentEnd => {
                let collected = std::mem::replace(&mut current, Collector::new());
                let document = Document {
                    events: collected.events,
                    counts: collected.counts,
                };
                if !document.is_null() {
                    documents.push(document);
                }
            }
            event => current.push(event, mark)?,
        }
    }
    Ok(documents)
}

/// Every document of a YAML text as a JSON value; empty documents are left out.
pub fn values(text: &str) -> Result<Vec<Value>, YamlError> {
    documents(text)?
        .into_iter()
        .map(Document::deserialize)
        .collect()
}

/// A scalar's value under the YAML 1.2 core schema.
enum Resolved {
    Null,
    Bool(bool),
    Signed(i64),
    Unsigned(u64),
    Float(f64),
    Text,
}

fn scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Resolved, String> {
    if let Some(tag) = tag.filter(|t| t.handle == "tag:yaml.org,2002:") {
        let bad = || format!("{text:?} is not a valid !!{}", tag.suffix);
        return match tag.suffix.as_str() {
            "str" => Ok(Resolved::Text),
            "null" => matches!(text, "" | "~" | "null" | "Null" | "NULL")
                .then_some(Resolved::Null)
                .ok_or_else(bad),
            "bool" => boolean(text).map(Resolved::Bool).ok_or_else(bad),
            "int" => integer(text).ok_or_else(bad),
            "float" => float(text).ok_or_else(bad)?.map_err(|()| bad()),
            _ => Ok(Resolved::Text),
        };
    }
    if style != TScalarStyle::Plain || tag.is_some() {
        return Ok(Resolved::Text);
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Resolved::Null);
    }
    if let Some(b) = boolean(text) {
        return Ok(Resolved::Bool(b));
    }
    if let Some(n) = integer(text) {
        return Ok(n);
    }
    match float(text) {
        Some(Ok(n)) => Ok(n),
        Some(Err(())) => Err(format!(
            "{text:?} is not a finite number (JSON has no infinity or NaN); quote it for text"
        )),
        None => Ok(Resolved::Text),
    }
}

fn boolean(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn integer(text: &str) -> Option<Resolved> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(d) = digits.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = digits.strip_prefix("0o") {
        (8, d)
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if !negative {
        return Some(Resolved::Unsigned(magnitude));
    }
    0i64.checked_sub_unsigned(magnitude).map(Resolved::Signed)
}

/// `None`: not a float; `Some(Err)`: a float JSON cannot hold.
fn float(text: &str) -> Option<Result<Resolved, ()>> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(
        unsigned,
        ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN"
    ) {
        return Some(Err(()));
    }
    let bytes = unsigned.as_bytes();
    let mantissa_end = bytes
        .iter()
        .position(|b| *b == b'e' || *b == b'E')
        .unwrap_or(bytes.len());
    let (mantissa, exponent) = bytes.split_at(mantissa_end);
    let digits = mantissa.iter().filter(|b| b.is_ascii_digit()).count();
    let dots = mantissa.iter().filter(|b| **b == b'.').count();
    let mantissa_ok = digits > 0 && dots <= 1 && digits + dots == mantissa.len();
    let exponent_ok = match exponent {
        [] => true,
        [_, rest @ ..] => {
            let rest = rest
                .strip_prefix(b"-")
                .or(rest.strip_prefix(b"+"))
                .unwrap_or(rest);
            !rest.is_empty() && rest.iter().all(u8::is_ascii_digit)
        }
    };
    if !mantissa_ok || !exponent_ok {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    Some(
        value
            .is_finite()
            .then_some(Resolved::Float(value))
            .ok_or(()),
    )
}

/// Reads typed values from one document's events, moving strings out.
struct Deserializer {
    events: Vec<(Event, Marker)>,
    counts: Vec<u32>,
    pos: usize,
}

impl Deserializer {
    fn peek(&self) -> Option<&Event> {
        self.events.get(self.pos).map(|(e, _)| e)
    }

    fn mark(&self) -> Option<Marker> {
        self.events
            .get(self.pos)
            .or(self.events.last())
            .map(|(_, m)| *m)
    }

    fn next(&mut self) -> Result<(Event, Marker), YamlError> {
        let Some(slot) = self.events.get_mut(self.pos) else {
            return Err(de::Error::custom("unexpected end of document"));
        };
        self.pos += 1;
        Ok((std::mem::replace(&mut slot.0, Event::Nothing), slot.1))
    }

    /// Consumes the end of a collection whose items the visitor took.
    fn end(&mut self, mapping: bool) -> Result<(), YamlError> {
        match (self.next()?, mapping) {
            ((Event::SequenceEnd, _), false) | ((Event::MappingEnd, _), true) => Ok(()),
            ((_, mark), _) => Err(YamlError::at(
                mark,
                if mapping {
                    "unexpected extra entries"
                } else {
                    "unexpected extra items"
                },
            )),
        }
    }

    /// Skips one whole node.
    fn skip(&mut self) -> Result<(), YamlError> {
        if self.pos >= self.events.len() {
            return Err(de::Error::custom("unexpected end of document"));
        }
        self.pos = node_end(&self.events, self.pos);
        Ok(())
    }
}

impl<'de> de::Deserializer<'de> for &mut Deserializer {
    type Error = YamlError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        let (event, mark) = self.next()?;
        let result = match event {
            Event::Scalar(text, style, _, tag) => {
                match scalar(&text, style, tag.as_ref()).map_err(|m| YamlError::at(mark, m))? {
                    Resolved::Null => visitor.visit_unit(),
                    Resolved::Bool(b) => visitor.visit_bool(b),
                    Resolved::Signed(n) => visitor.visit_i64(n),
                    Resolved::Unsigned(n) => visitor.visit_u64(n),
                    Resolved::Float(n) => visitor.visit_f64(n),
                    Resolved::Text => visitor.visit_string(text),
                }
            }
            Event::SequenceStart(..) => {
                let left = self.counts.get(self.pos - 1).copied().unwrap_or(0) as usize;
                visitor
                    .visit_seq(Items {
                        de: &mut *self,
                        left,
                    })
                    .and_then(|value| self.end(false).map(|()| value))
            }
            Event::MappingStart(..) => {
                let left = self.counts.get(self.pos - 1).copied().unwrap_or(0) as usize;
                visitor
                    .visit_map(Entries {
                        de: &mut *self,
                        left,
                    })
                    .and_then(|value| self.end(true).map(|()| value))
            }
            other => Err(YamlError::at(mark, format!("unexpected {other:?}"))),
        };
        result.map_err(|e| e.or_at(mark))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        if let Some(Event::Scalar(text, style, _, tag)) = self.peek()
            && matches!(scalar(text, *style, tag.as_ref()), Ok(Resolved::Null))
        {
            self.pos += 1;
            return visitor.visit_none();
        }
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        let mark = self.mark();
        let result = match self.peek() {
            Some(Event::Scalar(..)) => match self.next()?.0 {
                Event::Scalar(text, ..) => visitor.visit_enum(text.into_deserializer()),
                _ => unreachable!("peeked a scalar"),
            },
            Some(Event::MappingStart(..)) => {
                self.pos += 1;
                visitor
                    .visit_enum(Variant { de: &mut *self })
                    .and_then(|value| self.end(true).map(|()| value))
            }
            _ => Err(de::Error::custom(
                "expected a variant name, or a mapping of one variant to its value",
            )),
        };
        match mark {
            Some(mark) => result.map_err(|e: YamlError| e.or_at(mark)),
            None => result,
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        self.skip()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// A mapping key: always the text as written.
struct Key(String);

impl<'de> de::Deserializer<'de> for Key {
    type Error = YamlError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        visitor.visit_string(self.0)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        visitor.visit_enum(self.0.into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

impl Deserializer {
    fn key<'de, K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<K::Value, YamlError> {
        let (event, mark) = self.next()?;
        match event {
            Event::Scalar(text, ..) => seed.deserialize(Key(text)).map_err(|e| e.or_at(mark)),
            _ => Err(YamlError::at(mark, NON_SCALAR_KEY)),
        }
    }
}

struct Items<'a> {
    de: &'a mut Deserializer,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Items<'_> {
    type Error = YamlError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, YamlError> {
        match self.de.peek() {
            Some(Event::SequenceEnd) | None => Ok(None),
            Some(_) => {
                self.left = self.left.saturating_sub(1);
                seed.deserialize(&mut *self.de).map(Some)
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

struct Entries<'a> {
    de: &'a mut Deserializer,
    left: usize,
}

impl<'de> de::MapAccess<'de> for Entries<'_> {
    type Error = YamlError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, YamlError> {
        match self.de.peek() {
            Some(Event::MappingEnd) | None => Ok(None),
            Some(_) => {
                self.left = self.left.saturating_sub(1);
                self.de.key(seed).map(Some)
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, YamlError> {
        seed.deserialize(&mut *self.de)
    }
}

/// `{Variant: value}`.
struct Variant<'a> {
    de: &'a mut Deserializer,
}

impl<'de> de::EnumAccess<'de> for Variant<'_> {
    type Error = YamlError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), YamlError> {
        let variant = self.de.key(seed)?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_> {
    type Error = YamlError;

    fn unit_variant(self) -> Result<(), YamlError> {
        de::Deserialize::deserialize(&mut *self.de)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, YamlError> {
        seed.deserialize(&mut *self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        de::Deserializer::deserialize_seq(&mut *self.de, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        de::Deserializer::deserialize_map(&mut *self.de, visitor)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    fn one(text: &str) -> Value {
        let mut docs = values(text).unwrap();
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.remove(0)
    }

    #[test]
    fn core_schema_scalars() {
        let v = one(concat!(
            "a: 1\nb: -7\nc: 0x1F\nd: 0o17\ne: 1.5\nf: 2e3\ng: true\nh: False\n",
            "i: null\nj: ~\nk:\nl: yes\nm: \"8080\"\nn: '1.0'\no: 012\np: 18446744073709551615\n",
            "q: '*.example.com'\nr: 1.2.3.4:80\ns: !!str 42\nt: -0.5\nu: .5\nv: 1_000\n",
            "200: status\n",
        ));
        assert_eq!(
            v,
            json!({
                "a": 1, "b": -7, "c": 31, "d": 15, "e": 1.5, "f": 2000.0, "g": true,
                "h": false, "i": null, "j": null, "k": null, "l": "yes", "m": "8080",
                "n": "1.0", "o": 12, "p": 18_446_744_073_709_551_615u64,
                "q": "*.example.com", "r": "1.2.3.4:80", "s": "42", "t": -0.5, "u": 0.5,
                "v": "1_000", "200": "status",
            })
        );
    }

    #[test]
    fn flow_and_block_styles_and_many_documents() {
        let docs = values(concat!(
            "kind: Tenant\nmetadata: {name: t1}\nspec:\n  domains: [\"*.t1.example\", a.example]\n",
            "---\n---\n# only a comment\n---\n",
            "kind: Route\nspec:\n  backends:\n    - {name: a, address: \"127.0.0.1:80\", weight: 2}\n",
            "  pem: |\n    line one\n    line two\n  folded: >\n    a\n    b\n",
        ))
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0],
            json!({"kind": "Tenant", "metadata": {"name": "t1"},
                   "spec": {"domains": ["*.t1.example", "a.example"]}})
        );
        assert_eq!(
            docs[1]["spec"]["backends"][0],
            json!({"name": "a", "address": "127.0.0.1:80", "weight": 2})
        );
        assert_eq!(docs[1]["spec"]["pem"], "line one\nline two\n");
        assert_eq!(docs[1]["spec"]["folded"], "a b\n");
    }

    #[test]
    fn anchors_and_aliases() {
        let v = one("base: &b {x: 1, y: [a, b]}\ncopy: *b\nname: &n web\nalso: *n\n");
        assert_eq!(v["copy"], json!({"x": 1, "y": ["a", "b"]}));
        assert_eq!(v["also"], "web");
    }

    #[test]
    fn fields_are_read_before_the_type_is_chosen() {
        let docs = documents(
            "apiVersion: v1\nspec: {a: [1, {b: 2}]}\nkind: Route\nmetadata:\n  labels: {x: y}\n  name: web\n",
        )
        .unwrap();
        assert_eq!(docs[0].field(&["kind"]), Some("Route"));
        assert_eq!(docs[0].field(&["metadata", "name"]), Some("web"));
        assert_eq!(docs[0].field(&["metadata", "namespace"]), None);
        assert_eq!(docs[0].field(&["spec"]), None);
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Typed {
        name: String,
        count: u32,
        mode: Mode,
        tags: Vec<String>,
        limit: Option<u64>,
        #[serde(default)]
        on: bool,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    enum Mode {
        RoundRobin,
        Weighted,
    }

    #[test]
    fn typed_reads_and_errors_name_the_line() {
        let doc = documents("name: web\ncount: 3\nmode: weighted\ntags: [a, b]\nlimit: ~\n")
            .unwrap()
            .remove(0);
        assert_eq!(
            doc.deserialize::<Typed>().unwrap(),
            Typed {
                name: "web".into(),
                count: 3,
                mode: Mode::Weighted,
                tags: vec!["a".into(), "b".into()],
                limit: None,
                on: false,
            }
        );
        let bad = |text: &str| {
            documents(text)
                .unwrap()
                .remove(0)
                .deserialize::<Typed>()
                .unwrap_err()
        };
        let e = bad("name: web\ncount: lots\nmode: weighted\ntags: []\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("invalid type: string \"lots\""), "{e}");
        let e = bad("name: web\ncount: 1\nmode: random\ntags: []\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("unknown variant `random`"), "{e}");
        let e = bad("name: web\ncount: 1\nmode: weighted\ntags: []\nextra: 1\n");
        assert!(e.message.contains("unknown field `extra`"), "{e}");
        let e = bad("name: web\nmode: weighted\ntags: []\n");
        assert!(e.message.contains("missing field `count`"), "{e}");
        let e = bad("name: web\ncount: 1\nmode: weighted\ntags: []\non: yes\n");
        assert!(e.message.contains("expected a boolean"), "{e}");
    }

    #[test]
    fn lists_are_allocated_at_their_size() {
        let doc = documents("a: [x, y, z]\nb:\n  - {c: [1]}\n  - *n\nn: &n 5\n");
        assert!(doc.is_err(), "an alias before its anchor is refused");
        #[derive(Deserialize)]
        struct Lists {
            a: Vec<String>,
            b: Vec<Vec<u32>>,
        }
        let doc = documents("a: [x, y, z]\nb: [&l [1, 2], *l, []]\n")
            .unwrap()
            .remove(0);
        let lists: Lists = doc.deserialize().unwrap();
        assert_eq!((lists.a.len(), lists.a.capacity()), (3, 3));
        assert_eq!((lists.b.len(), lists.b.capacity()), (3, 3));
        assert_eq!((lists.b[1].len(), lists.b[1].capacity()), (2, 2));
    }

    #[test]
    fn errors_name_the_line() {
        let e = documents("a: 1\na: 2\n").unwrap_err();
        assert!(e.message.contains("duplicate key \"a\""), "{e}");
        assert_eq!(e.line, 2);
        let mut many: String = (0..100).map(|i| format!("k{i}: {i}\n")).collect();
        many.push_str("k7: again\n");
        let e = documents(&many).unwrap_err();
        assert!(e.message.contains("duplicate key \"k7\""), "{e}");
        let e = documents("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.line >= 2, "{e}");
        let e = documents("? [a]\n: 1\n").unwrap_err();
        assert!(e.message.contains("must be a scalar"), "{e}");
        let e = values("x: .inf\n").unwrap_err();
        assert!(e.message.contains("not a finite number"), "{e}");
        let e = values("x: !!int abc\n").unwrap_err();
        assert!(e.message.contains("not a valid !!int"), "{e}");
        assert!(documents("x: *nowhere\n").is_err());
    }

    #[test]
    fn alias_bombs_stop_early() {
        let mut text = String::from("a0: &a0 [\"lol lol lol lol lol lol lol lol\"]\n");
        for i in 1..30 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!(
                "a{i}: &a{i} [{prev}, {prev}, {prev}, {prev}, {prev}, {prev}, {prev}, {prev}]\n"
            ));
        }
        let e = documents(&text).unwrap_err();
        assert!(e.message.contains("too many aliases"), "{e}");
    }
}
