//! Detectors: find personal and payment data inside free text, as byte
//! ranges, so that only the matching part of a longer string is masked.
//!
//! Every built-in detector trades recall for a low false-positive rate on
//! the identifiers, timestamps and prices that fill API responses: numbers
//! must pass a checksum or carry formatting that ids do not have.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

/// Kind of sensitive value to find.
#[derive(Clone, Debug)]
pub enum Detector {
    /// Payment card numbers of 13 to 19 digits with the prefix and length
    /// of a major card scheme and a valid Luhn check digit. The digits are
    /// unbroken or in groups of 3 to 6, split by single spaces or by single
    /// dashes.
    Card,
    /// Email addresses with a dotted domain and an alphabetic top-level
    /// domain of at least two letters.
    Email,
    /// Phone numbers: `+` and 8 to 15 digits (E.164), North American
    /// `(555) 123-4567` / `555-123-4567` forms, and national forms of 10 to
    /// 12 digits that start with a trunk `0` and contain spaces or dashes
    /// (`020 7946 0958`). Unbroken digits without `+` are never matched.
    Phone,
    /// IBANs, grouped or not, whose length matches the country and whose
    /// mod-97 check passes.
    Iban,
    /// A configured regular expression.
    Pattern(Pattern),
}

/// Named regular expression for values the built-in detectors do not know.
#[derive(Clone, Debug)]
pub struct Pattern {
    name: String,
    regex: Regex,
    /// The same regex over bytes, when it has no anchors or word
    /// boundaries: whether it matches a substring then does not depend on
    /// the text around it, and one search of a whole JSON body shows
    /// whether any of its strings can match. Over bytes, that search needs
    /// no UTF-8 check of the body first.
    body_regex: Option<regex::bytes::Regex>,
}

impl Pattern {
    /// Compiles `source`. The `name` labels the detector in config and logs.
    pub fn new(name: &str, source: &str) -> Result<Pattern, regex::Error> {
        let regex = Regex::new(source)?;
        let context_free =
            regex_syntax::parse(source).is_ok_and(|hir| hir.properties().look_set().is_empty());
        let body_regex = if context_free {
            Some(regex::bytes::Regex::new(source)?)
        } else {
            None
        };
        Ok(Pattern {
            name: name.to_owned(),
            regex,
            body_regex,
        })
    }
}

impl Detector {
    /// Returns the stable name of the detector (`card`, `email`, `phone`,
    /// `iban`, or the pattern's name).
    pub fn name(&self) -> &str {
        match self {
            Detector::Card => "card",
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::Iban => "iban",
            Detector::Pattern(pattern) => &pattern.name,
        }
    }

    /// Finds every match in `text`, as sorted, non-overlapping byte ranges.
    pub fn find(&self, text: &str) -> Vec<Range<usize>> {
        self.find_with(text, &Shape::of(text))
    }

    /// Like [`Detector::find`], with the shape of `text` measured once for
    /// all detectors.
    pub(crate) fn find_with(&self, text: &str, shape: &Shape) -> Vec<Range<usize>> {
        if !self.may_match(shape) {
            return Vec::new();
        }

        match self {
            Detector::Card => find_cards(text),
            Detector::Email => EMAIL.find_iter(text).map(|m| m.range()).collect(),
            Detector::Phone => find_phones(text, shape),
            Detector::Iban => find_ibans(text),
            Detector::Pattern(pattern) => pattern
                .regex
                .find_iter(text)
                .filter(|m| !m.is_empty())
                .map(|m| m.range())
                .collect(),
        }
    }

    /// Returns whether no string inside `body` can hold a match, decided
    /// by one search of the whole body. That holds for a context-free
    /// pattern that does not match `body`, because every string of a JSON
    /// body without escapes is a substring of the body. Built-in detectors
    /// return false: their quick rejection works per string.
    pub(crate) fn absent_from(&self, body: &[u8]) -> bool {
        match self {
            Detector::Pattern(Pattern {
                body_regex: Some(regex),
                ..
            }) => !regex.is_match(body),
            _ => false,
        }
    }

    /// Rejects text whose shape cannot hold a match, so that no regex runs
    /// over it: too few digits in one run, no `@`, or no IBAN country and
    /// check digits.
    fn may_match(&self, shape: &Shape) -> bool {
        match self {
            Detector::Card => shape.card_run_digits >= MIN_CARD_DIGITS,
            Detector::Phone => {
                shape.phone_run_digits >= MIN_NATIONAL_PHONE_DIGITS
                    || (shape.plus && shape.phone_run_digits >= MIN_PHONE_DIGITS)
            }
            Detector::Iban => shape.iban_start,
            Detector::Email => shape.at_sign,
            Detector::Pattern(_) => true,
        }
    }
}

/// What one scan over a text learns for every detector's quick rejection.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Shape {
    /// Maximum digit count of one run of digit groups split by single
    /// spaces or dashes. [`DIGIT_RUN`] finds these runs, and a card number
    /// lies inside one.
    card_run_digits: usize,
    /// Maximum digit count of one run of the bytes a phone match can
    /// contain: digits, `+`, `(`, `)`, space, `.` and `-`.
    phone_run_digits: usize,
    at_sign: bool,
    plus: bool,
    /// Two ASCII letters followed by two digits somewhere: the start of an
    /// IBAN.
    iban_start: bool,
}

impl Shape {
    pub(crate) fn of(text: &str) -> Shape {
        // Every built-in detector needs a digit or an `@`. Most strings of
        // a response have neither, and one plain pass over them is enough.
        if !text
            .bytes()
            .any(|byte| byte.is_ascii_digit() || byte == b'@')
        {
            return Shape::default();
        }

        let mut shape = Shape::default();
        let mut digits = 0;
        // Letters, then digits, seen in a row just before this byte.
        let (mut letters, mut digits_after_letters) = (0u8, 0u8);
        for byte in text.bytes() {
            if byte.is_ascii_digit() {
                digits += 1;
                if letters >= 2 {
                    digits_after_letters += 1;
                    shape.iban_start |= digits_after_letters >= 2;
                }
                continue;
            }
            shape.at_sign |= byte == b'@';
            shape.plus |= byte == b'+';
            if byte.is_ascii_alphabetic() && digits_after_letters == 0 {
                letters = letters.saturating_add(1);
            } else {
                letters = u8::from(byte.is_ascii_alphabetic());
                digits_after_letters = 0;
            }
        }

        // Counting digits per run costs more per byte, so it runs only on
        // text with enough digits for a phone number at all.
        if digits >= MIN_PHONE_DIGITS {
            shape.count_runs(text);
        }
        shape
    }

    /// Sets the digit counts of the longest card and phone runs, stopping
    /// once both are long enough for every detector.
    fn count_runs(&mut self, text: &str) {
        let mut card_run = CardRun::default();
        let mut phone_run = 0;
        for byte in text.bytes() {
            card_run.push(byte);
            self.card_run_digits = self.card_run_digits.max(card_run.digits);
            match byte {
                b'0'..=b'9' => {
                    phone_run += 1;
                    self.phone_run_digits = self.phone_run_digits.max(phone_run);
                }
                b'+' | b'(' | b')' | b' ' | b'.' | b'-' => {}
                _ => phone_run = 0,
            }
            if self.card_run_digits >= MIN_CARD_DIGITS
                && self.phone_run_digits >= MIN_NATIONAL_PHONE_DIGITS
            {
                return;
            }
        }
    }
}

/// Minimum digit count of a card number.
const MIN_CARD_DIGITS: usize = 13;

/// Minimum digit count of a phone number written with `+` and a country code.
const MIN_PHONE_DIGITS: usize = 8;

/// Minimum digit count of a phone number written without `+`.
const MIN_NATIONAL_PHONE_DIGITS: usize = 10;

/// Digits of the digit run that ends at the last byte pushed, as
/// [`DIGIT_RUN`] would match it.
#[derive(Default)]
struct CardRun {
    digits: usize,
    /// The last byte was a digit.
    after_digit: bool,
    /// The last byte was a single space or dash after a digit.
    after_separator: bool,
}

impl CardRun {
    fn push(&mut self, byte: u8) {
        match byte {
            b'0'..=b'9' => {
                if !self.after_digit && !self.after_separator {
                    self.digits = 0;
                }
                self.digits += 1;
                self.after_digit = true;
                self.after_separator = false;
            }
            b' ' | b'-' if self.after_digit => {
                self.after_digit = false;
                self.after_separator = true;
            }
            _ => *self = CardRun::default(),
        }
    }
}

/// Runs of digit groups split by single spaces or dashes.
static DIGIT_RUN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[0-9]+(?:[ -][0-9]+)*").unwrap());

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b",
    )
    .unwrap()
});

/// `+`, country code, then digit groups with at most one separator
/// between them and at most one bracketed area code.
static PHONE_INTERNATIONAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\+[0-9]{1,4}(?:[ .-]?\([0-9]{1,5}\))?(?:[ .-]?[0-9]{1,5})+").unwrap()
});

/// North American Numbering Plan: area code and exchange start with 2-9.
static PHONE_NANP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}").unwrap()
});

/// National numbers written with a trunk `0` and spaces or dashes.
// NOTE: the German `089/1234567` slash form is not detected, because
// reference numbers such as `0451/123456` have the same shape.
static PHONE_TRUNK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\(0[1-9][0-9]{0,3}\)|0[1-9][0-9]{0,3})(?:[ -][0-9]{2,8}){1,4}").unwrap()
});

static IBAN_CANDIDATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,30}").unwrap());

fn find_cards(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    for run in DIGIT_RUN.find_iter(text) {
        if is_isolated(text, run.range()) {
            find_cards_in_run(run.as_str(), run.start(), &mut spans);
        }
    }
    spans
}

/// Searches one digit run for card numbers, longest first, because a card
/// may sit between other numbers in the same run ("4111 1111 1111 1111 2026").
fn find_cards_in_run(run: &str, base: usize, spans: &mut Vec<Range<usize>>) {
    let groups: Vec<Range<usize>> = DIGITS.find_iter(run).map(|m| m.range()).collect();

    let mut first = 0;
    while first < groups.len() {
        let last_candidate = (first + MAX_CARD_GROUPS - 1).min(groups.len() - 1);
        let found = (first..=last_candidate)
            .rev()
            .find(|&last| is_card_window(run, &groups[first..=last]));
        match found {
            Some(last) => {
                spans.push(base + groups[first].start..base + groups[last].end);
                first = last + 1;
            }
            None => first += 1,
        }
    }
}

/// Most groups a formatted card number can have: 19 digits in groups of at
/// least 3. The bound keeps the search linear in the length of the run.
const MAX_CARD_GROUPS: usize = 6;

static DIGITS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[0-9]+").unwrap());

fn is_card_window(run: &str, groups: &[Range<usize>]) -> bool {
    let digit_count: usize = groups.iter().map(|g| g.len()).sum();
    if !(13..=19).contains(&digit_count) {
        return false;
    }

    if groups.len() > 1 {
        let grouped_like_card = groups.iter().all(|g| (3..=6).contains(&g.len()));
        let first_separator = run.as_bytes()[groups[0].end];
        let one_separator_kind = groups
            .windows(2)
            .all(|pair| run.as_bytes()[pair[0].end] == first_separator);
        if !grouped_like_card || !one_separator_kind {
            return false;
        }
    }

    let digits: Vec<u8> = groups
        .iter()
        .flat_map(|g| run.as_bytes()[g.clone()].iter().map(|b| b - b'0'))
        .collect();
    has_issuer_prefix(&digits) && luhn_valid(&digits)
}

/// Checks the Luhn (mod 10) check digit of a sequence of decimal digits.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Checks the issuer identification number and length against the ranges
/// of the major card schemes. Unix timestamps and snowflake ids start with
/// 1, compact timestamps with a year such as 2026, and no scheme issues
/// numbers with those prefixes at those lengths.
fn has_issuer_prefix(digits: &[u8]) -> bool {
    let prefix = |n: usize| {
        digits[..n]
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
    };
    let length = digits.len();
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));

    let visa = p1 == 4 && matches!(length, 13 | 16 | 19);
    let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && length == 16;
    let amex = matches!(p2, 34 | 37) && length == 15;
    let mir = (2200..=2204).contains(&p4) && length >= 16;
    let diners = ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39)) && length >= 14;
    let jcb = (3528..=3589).contains(&p4) && length >= 16;
    let discover = (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65) && length >= 16;
    let unionpay = p2 == 62 && length >= 16;
    let maestro = (p2 == 50 || (56..=58).contains(&p2) || matches!(p2, 63 | 67)) && length >= 16;

    visa || mastercard || amex || mir || diners || jcb || discover || unionpay || maestro
}

/// Runs the phone forms the text can hold: `+` forms need a `+` and 8
/// digits, the others 10 digits (see [`has_phone_length`]).
fn find_phones(text: &str, shape: &Shape) -> Vec<Range<usize>> {
    let mut spans: Vec<Range<usize>> = Vec::new();

    let international = shape.plus.then_some(&*PHONE_INTERNATIONAL);
    let national = (shape.phone_run_digits >= MIN_NATIONAL_PHONE_DIGITS)
        .then_some([&*PHONE_NANP, &*PHONE_TRUNK]);
    let forms = international
        .into_iter()
        .chain(national.into_iter().flatten());
    for regex in forms {
        for found in regex.find_iter(text) {
            if is_isolated(text, found.range()) && has_phone_length(found.as_str()) {
                spans.push(found.range());
            }
        }
    }

    merge_overlaps(spans)
}

fn has_phone_length(candidate: &str) -> bool {
    let digits = candidate.bytes().filter(u8::is_ascii_digit).count();
    if candidate.starts_with('+') {
        (8..=15).contains(&digits)
    } else {
        // Ten digits at least, so that ZIP+4 codes (9 digits) never match.
        (10..=12).contains(&digits)
    }
}

fn find_ibans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    for candidate in IBAN_CANDIDATE.find_iter(text) {
        if joined_before(text, candidate.start()) {
            continue;
        }
        if let Some(length) = iban_span_length(candidate.as_str()) {
            let end = candidate.start() + length;
            if !joined_after(text, end) {
                spans.push(candidate.start()..end);
            }
        }
    }
    spans
}

/// Returns the byte length of the IBAN at the start of `candidate`, cut to
/// the length registered for its country, if its check digits are valid.
fn iban_span_length(candidate: &str) -> Option<usize> {
    let country = candidate[..2].to_ascii_uppercase();
    let expected = iban_length(&country)?;

    let mut compact = String::with_capacity(expected);
    let mut end = 0;
    for (offset, c) in candidate.char_indices() {
        if c == ' ' {
            continue;
        }
        compact.push(c.to_ascii_uppercase());
        if compact.len() == expected {
            end = offset + 1;
            break;
        }
    }

    (compact.len() == expected && iban_checksum_valid(&compact)).then_some(end)
}

/// Computes the ISO 7064 mod-97-10 check over an upper-case compact IBAN.
pub fn iban_checksum_valid(iban: &str) -> bool {
    let check_digits: u32 = iban[2..4].parse().unwrap_or(0);
    if !(2..=98).contains(&check_digits) {
        return false;
    }

    let rearranged = iban[4..].chars().chain(iban[..4].chars());
    let mut remainder: u32 = 0;
    for c in rearranged {
        let Some(value) = c.to_digit(36) else {
            return false;
        };
        remainder = if value < 10 {
            (remainder * 10 + value) % 97
        } else {
            (remainder * 100 + value) % 97
        };
    }
    remainder == 1
}

/// IBAN length per country code (ISO 13616).
// NOTE: not checked against the current SWIFT IBAN registry. An IBAN of a
// country missing here is never detected.
fn iban_length(country: &str) -> Option<usize> {
    let length = match country {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FO" | "GL" | "NL" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "XK" => 20,
        "CH" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "CR" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" | "VA" => 22,
        "AE" | "GI" | "IL" | "IQ" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "PT" | "ST" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "BY" | "CY" | "DO" | "GT" | "HU" | "LB" | "PL" | "SV" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "JO" | "KW" | "MU" => 30,
        "MT" | "SC" => 31,
        "LC" => 32,
        _ => return None,
    };
    Some(length)
}

/// Checks that a match is not part of a longer word or number. Neither
/// neighbour may be a letter, digit or `_`. Nor may it be a `.`, `-`, `/`
/// or `:` that joins the match to more digits, as in a date or decimal.
fn is_isolated(text: &str, span: Range<usize>) -> bool {
    !joined_before(text, span.start) && !joined_after(text, span.end)
}

fn joined_before(text: &str, offset: usize) -> bool {
    joins_more(text[..offset].chars().rev())
}

fn joined_after(text: &str, offset: usize) -> bool {
    joins_more(text[offset..].chars())
}

fn joins_more(mut neighbours: impl Iterator<Item = char>) -> bool {
    match neighbours.next() {
        Some(c) if c.is_alphanumeric() || c == '_' => true,
        Some('.' | '-' | '/' | ':') => neighbours.next().is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// Sorts spans and drops each one that overlaps an earlier, longer match.
pub fn merge_overlaps(mut spans: Vec<Range<usize>>) -> Vec<Range<usize>> {
    spans.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));

    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last() {
            Some(last) if span.start < last.end => {}
            _ => merged.push(span),
        }
    }
    merged
}

#[cfg(test)]
mod tests;
