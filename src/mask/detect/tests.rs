use super::*;

/// Runs `detector` over each case and compares the matched substrings.
fn check(detector: &Detector, cases: &[(&str, &str, &[&str])]) {
    for (description, text, expected) in cases {
        let found: Vec<&str> = detector
            .find(text)
            .into_iter()
            .map(|span| &text[span])
            .collect();
        assert_eq!(&found, expected, "{description}: {text:?}");
    }
}

#[test]
fn card_numbers_found() {
    check(
        &Detector::Card,
        &[
            ("visa unbroken", "4111111111111111", &["4111111111111111"]),
            ("mastercard", "5500000000000004", &["5500000000000004"]),
            (
                "mastercard 2-series",
                "2223003122003222",
                &["2223003122003222"],
            ),
            ("amex", "378282246310005", &["378282246310005"]),
            (
                "amex grouped 4-6-5",
                "3782 822463 10005",
                &["3782 822463 10005"],
            ),
            ("discover", "6011111111111117", &["6011111111111117"]),
            ("jcb", "3530111333300000", &["3530111333300000"]),
            ("diners 14 digits", "30569309025904", &["30569309025904"]),
            ("visa 13 digits", "4222222222222", &["4222222222222"]),
            (
                "visa 19 digits",
                "4000000000000000006",
                &["4000000000000000006"],
            ),
            ("unionpay", "6200000000000005", &["6200000000000005"]),
            (
                "spaces",
                "card 4111 1111 1111 1111 exp 12/27",
                &["4111 1111 1111 1111"],
            ),
            ("dashes", "4111-1111-1111-1111", &["4111-1111-1111-1111"]),
            (
                "sentence end",
                "pay with 4111111111111111.",
                &["4111111111111111"],
            ),
            (
                "year after card",
                "4111 1111 1111 1111 2026",
                &["4111 1111 1111 1111"],
            ),
            (
                "after a label",
                "pan:4111111111111111",
                &["4111111111111111"],
            ),
            (
                "two cards",
                "4111111111111111, 5500 0000 0000 0004",
                &["4111111111111111", "5500 0000 0000 0004"],
            ),
        ],
    );
}

#[test]
fn non_card_numbers_ignored() {
    check(
        &Detector::Card,
        &[
            ("luhn invalid", "4111111111111112", &[]),
            ("luhn invalid grouped", "4111 1111 1111 1112", &[]),
            ("timestamp", "20261204123000", &[]),
            ("luhn-valid timestamp", "20261204123008", &[]),
            ("luhn-valid unix milliseconds", "1764894758002", &[]),
            ("luhn-valid order id", "1000000000123453", &[]),
            ("iso date", "2026-12-04", &[]),
            ("iso date time", "2026-12-04T12:30:00Z", &[]),
            ("uuid", "550e8400-e29b-41d4-a716-446655440000", &[]),
            ("version", "4.111.1111.1111111", &[]),
            ("20 digits", "41111111111111111111", &[]),
            ("letter prefix", "x4111111111111111", &[]),
            ("letter suffix", "4111111111111111x", &[]),
            ("mixed separators", "4111 1111-1111 1111", &[]),
            ("double space", "4111  1111 1111 1111", &[]),
            ("decimal", "4111111111111111.25", &[]),
            ("unknown issuer", "9111111111111111", &[]),
            ("amex prefix wrong length", "3782822463100005", &[]),
            ("phone number", "+1 415 555 2671", &[]),
            ("short groups", "41 11 11 11 11 11 11 11", &[]),
        ],
    );
}

/// A window search over all pairs of groups would take minutes here.
#[test]
fn long_digit_run_scanned() {
    let text = "123 ".repeat(200_000) + "4111 1111 1111 1111";

    let found = Detector::Card.find(&text);

    assert_eq!(found.len(), 1);
    assert_eq!(&text[found[0].clone()], "4111 1111 1111 1111");
}

#[test]
fn emails_found() {
    check(
        &Detector::Email,
        &[
            ("plain", "alice@example.com", &["alice@example.com"]),
            (
                "tag and subdomain",
                "Contact: first.last+tag@mail.example.co.uk.",
                &["first.last+tag@mail.example.co.uk"],
            ),
            (
                "angle brackets",
                "<bob_smith@sub-domain.example.org>",
                &["bob_smith@sub-domain.example.org"],
            ),
            (
                "two addresses",
                "a@example.com;b@example.net",
                &["a@example.com", "b@example.net"],
            ),
        ],
    );
}

#[test]
fn non_emails_ignored() {
    check(
        &Detector::Email,
        &[
            ("no domain dot", "user@localhost", &[]),
            ("handle", "@handle", &[]),
            ("one-letter tld", "a@b.c", &[]),
            ("numeric tld", "root@10.0.0.1", &[]),
            ("no local part", "@example.com", &[]),
        ],
    );
}

#[test]
fn phones_found() {
    check(
        &Detector::Phone,
        &[
            ("e164", "+14155552671", &["+14155552671"]),
            (
                "international spaced",
                "+44 20 7946 0958",
                &["+44 20 7946 0958"],
            ),
            (
                "international bracketed",
                "+1 (415) 555-2671",
                &["+1 (415) 555-2671"],
            ),
            (
                "north american brackets",
                "call (415) 555-2671 now",
                &["(415) 555-2671"],
            ),
            ("north american dashes", "415-555-2671", &["415-555-2671"]),
            ("north american dots", "415.555.2671", &["415.555.2671"]),
            ("uk national", "020 7946 0958", &["020 7946 0958"]),
            ("french national", "06 12 34 56 78", &["06 12 34 56 78"]),
            ("german national", "030 12345678", &["030 12345678"]),
            ("dutch mobile", "06-12345678", &["06-12345678"]),
        ],
    );
}

#[test]
fn non_phones_ignored() {
    check(
        &Detector::Phone,
        &[
            ("bare digits", "4155552671", &[]),
            ("timestamp", "20261204123000", &[]),
            ("iso date", "2026-12-04", &[]),
            ("iso date time", "2026-12-04 12:30:45", &[]),
            ("slashed date", "04/12/2026", &[]),
            ("price", "1234.56", &[]),
            ("signed amount", "+12.50", &[]),
            ("too short with plus", "+1 555", &[]),
            ("too long with plus", "+123456789123456789", &[]),
            ("ip address", "192.168.100.200", &[]),
            ("version", "10.415.555.2671", &[]),
            ("uuid", "550e8400-e29b-41d4-a716-446655440000", &[]),
            ("isbn", "978-3-16-148410-0", &[]),
            ("area code starts with 1", "115-555-2671", &[]),
            ("card number", "4111 1111 1111 1111", &[]),
            ("zip+4 code", "04103-1234", &[]),
            ("slashed reference", "0451/123456", &[]),
        ],
    );
}

#[test]
fn ibans_found() {
    check(
        &Detector::Iban,
        &[
            (
                "german compact",
                "DE89370400440532013000",
                &["DE89370400440532013000"],
            ),
            (
                "german grouped",
                "DE89 3704 0044 0532 0130 00",
                &["DE89 3704 0044 0532 0130 00"],
            ),
            (
                "letters in bban",
                "GB82 WEST 1234 5698 7654 32",
                &["GB82 WEST 1234 5698 7654 32"],
            ),
            (
                "french",
                "FR1420041010050500013M02606",
                &["FR1420041010050500013M02606"],
            ),
            ("dutch", "NL91ABNA0417164300", &["NL91ABNA0417164300"]),
            ("shortest (norway)", "NO9386011117947", &["NO9386011117947"]),
            (
                "lower case",
                "de89370400440532013000",
                &["de89370400440532013000"],
            ),
            (
                "currency after",
                "IBAN DE89 3704 0044 0532 0130 00 EUR",
                &["DE89 3704 0044 0532 0130 00"],
            ),
        ],
    );
}

#[test]
fn non_ibans_ignored() {
    check(
        &Detector::Iban,
        &[
            ("bad checksum", "DE89370400440532013001", &[]),
            ("unknown country", "XX89370400440532013000", &[]),
            ("too short", "DE8937040044053201300", &[]),
            ("too long", "DE893704004405320130001", &[]),
            ("letter prefix", "ORDE89370400440532013000", &[]),
            ("order id", "AB12345678901234", &[]),
        ],
    );
}

#[test]
fn pattern_finds_configured_regex() {
    let pattern = Pattern::new("employee_id", r"EMP-[0-9]{6}").unwrap();
    let detector = Detector::Pattern(pattern);

    assert_eq!(detector.name(), "employee_id");
    check(
        &detector,
        &[
            ("one match", "owner EMP-123456", &["EMP-123456"]),
            (
                "two matches",
                "EMP-000001,EMP-000002",
                &["EMP-000001", "EMP-000002"],
            ),
            ("no match", "EMP-12345", &[]),
        ],
    );
}

#[test]
fn empty_pattern_matches_skipped() {
    let detector = Detector::Pattern(Pattern::new("optional", r"x*").unwrap());

    assert!(detector.find("abc").is_empty());
}

#[test]
fn invalid_pattern_rejected() {
    assert!(Pattern::new("broken", r"(unclosed").is_err());
}

#[test]
fn luhn_check_digit() {
    let cases = [
        ("valid visa", "4111111111111111", true),
        ("last digit off by one", "4111111111111112", false),
        ("all zeros", "0000000000000", true),
        ("single digit", "7", false),
    ];

    for (description, digits, expected) in cases {
        let digits: Vec<u8> = digits.bytes().map(|b| b - b'0').collect();
        assert_eq!(luhn_valid(&digits), expected, "{description}");
    }
}

#[test]
fn overlapping_spans_merged() {
    let merged = merge_overlaps(vec![5..9, 0..4, 2..3, 5..12]);

    assert_eq!(merged, vec![0..4, 5..12]);
}

/// Deterministic generator for the false-positive corpus (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn hex(&mut self, length: usize) -> String {
        (0..length)
            .map(|_| char::from_digit(self.below(16) as u32, 16).unwrap())
            .collect()
    }
}

/// Calendar fields of a random instant in 2020-2029.
fn random_instant(rng: &mut SplitMix) -> (u64, u64, u64, u64, u64, u64) {
    (
        2020 + rng.below(10),
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
    )
}

/// Custom epoch of Twitter-style snowflake ids (2010-11-04), in Unix
/// milliseconds.
const TWITTER_EPOCH_MS: u64 = 1_288_834_974_657;

/// Composes a 64-bit snowflake id: 41 bits of milliseconds since the
/// generator's epoch, 10 bits of worker id and 12 bits of sequence.
fn snowflake(clock_ms: u64, rng: &mut SplitMix) -> u64 {
    (clock_ms << 22) | (rng.below(1024) << 12) | rng.below(4096)
}

/// Builds `count` values of each kind of identifier, timestamp and amount
/// that API responses carry and that contain no personal data.
fn plausible_non_pii(rng: &mut SplitMix, count: usize) -> Vec<(&'static str, Vec<String>)> {
    let mut categories: Vec<(&'static str, Vec<String>)> = Vec::new();
    let mut add = |name, make: &mut dyn FnMut(&mut SplitMix) -> String| {
        let values = (0..count).map(|_| make(rng)).collect();
        categories.push((name, values));
    };

    add("sequential order ids", &mut |rng| {
        format!("ORD-{}", 100_000 + rng.below(9_900_000))
    });
    add("integer ids", &mut |rng| {
        (1 + rng.below(10_000_000_000)).to_string()
    });
    add("snowflake ids", &mut |rng| {
        let unix_ms = 1_500_000_000_000 + rng.below(300_000_000_000);
        snowflake(unix_ms - TWITTER_EPOCH_MS, rng).to_string()
    });
    add("unix seconds", &mut |rng| {
        (1_600_000_000 + rng.below(400_000_000)).to_string()
    });
    add("unix milliseconds", &mut |rng| {
        (1_600_000_000_000 + rng.below(400_000_000_000)).to_string()
    });
    add("unix microseconds", &mut |rng| {
        (1_600_000_000_000_000 + rng.below(400_000_000_000_000)).to_string()
    });
    add("compact timestamps", &mut |rng| {
        let (y, mo, d, h, mi, s) = random_instant(rng);
        format!("{y}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
    });
    add("compact timestamps with ms", &mut |rng| {
        let (y, mo, d, h, mi, s) = random_instant(rng);
        format!("{y}{mo:02}{d:02}{h:02}{mi:02}{s:02}{:03}", rng.below(1000))
    });
    add("iso date times", &mut |rng| {
        let (y, mo, d, h, mi, s) = random_instant(rng);
        format!(
            "{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
            rng.below(1000)
        )
    });
    add("spaced date times", &mut |rng| {
        let (y, mo, d, h, mi, s) = random_instant(rng);
        format!("{y}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
    });
    add("prices", &mut |rng| {
        format!("{}.{:02}", rng.below(100_000), rng.below(100))
    });
    add("grouped prices", &mut |rng| {
        format!(
            "{},{:03}.{:02}",
            1 + rng.below(999),
            rng.below(1000),
            rng.below(100)
        )
    });
    add("uuids", &mut |rng| {
        format!(
            "{}-{}-4{}-a{}-{}",
            rng.hex(8),
            rng.hex(4),
            rng.hex(3),
            rng.hex(3),
            rng.hex(12)
        )
    });
    add("object ids", &mut |rng| rng.hex(24));
    add("versions", &mut |rng| {
        format!("{}.{}.{}", rng.below(30), rng.below(100), rng.below(10_000))
    });
    add("dated order ids", &mut |rng| {
        let (y, mo, d, ..) = random_instant(rng);
        format!("{y}-{mo:02}{d:02}-{:06}", rng.below(1_000_000))
    });
    add("ip addresses", &mut |rng| {
        format!(
            "{}.{}.{}.{}",
            rng.below(256),
            rng.below(256),
            rng.below(256),
            rng.below(256)
        )
    });
    add("space-grouped amounts", &mut |rng| {
        format!(
            "{} {:03} {:03},{:02}",
            1 + rng.below(999),
            rng.below(1000),
            rng.below(1000),
            rng.below(100)
        )
    });
    add("dotted dates", &mut |rng| {
        let (y, mo, d, h, mi, _) = random_instant(rng);
        format!("{d:02}.{mo:02}.{y} {h:02}:{mi:02}")
    });
    add("zip+4 codes", &mut |rng| {
        format!("{:05}-{:04}", rng.below(100_000), rng.below(10_000))
    });
    add("zero-padded invoice numbers", &mut |rng| {
        format!("INV {:04}/{:06}", rng.below(10_000), rng.below(1_000_000))
    });
    categories
}

fn false_positive_count(detector: &Detector, values: &[String]) -> usize {
    values
        .iter()
        .filter(|value| !detector.find(value).is_empty())
        .count()
}

#[test]
fn card_and_phone_false_positives_rare() {
    let mut rng = SplitMix(0x5EED);
    let categories = plausible_non_pii(&mut rng, 1_000);
    let total: usize = categories.iter().map(|(_, values)| values.len()).sum();
    assert!(total >= 10_000, "corpus has {total} values");

    for detector in [Detector::Card, Detector::Phone] {
        let mut hits = 0;
        for (name, values) in &categories {
            let category_hits = false_positive_count(&detector, values);
            if category_hits > 0 {
                eprintln!(
                    "{} false positives in {name}: {category_hits} of {}",
                    detector.name(),
                    values.len()
                );
            }
            hits += category_hits;
        }

        let rate = hits as f64 / total as f64;
        eprintln!(
            "{} false-positive rate: {hits} of {total} values = {:.3} %",
            detector.name(),
            rate * 100.0
        );
        assert!(rate < 0.001, "{} rate {rate}", detector.name());
    }
}

/// Numbers that are indistinguishable from card numbers by format alone.
/// About one in ten passes Luhn by chance, so the bound only catches a
/// detector that stopped checking.
#[test]
fn card_false_positives_on_random_digits_reported() {
    let mut rng = SplitMix(0xCA2D);
    let random_16_digits: Vec<String> = (0..10_000)
        .map(|_| format!("{:016}", rng.below(10_000_000_000_000_000)))
        .collect();
    let gtin_13: Vec<String> = (0..10_000)
        .map(|_| {
            let body = format!("{:012}", 400_000_000_000 + rng.below(40_000_000_000));
            let weighted: u32 = body
                .bytes()
                .enumerate()
                .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 1 } else { 3 })
                .sum();
            format!("{body}{}", (10 - weighted % 10) % 10)
        })
        .collect();

    let unix_epoch_snowflakes: Vec<String> = (0..10_000)
        .map(|_| {
            let unix_ms = 1_500_000_000_000 + rng.below(300_000_000_000);
            snowflake(unix_ms, &mut rng).to_string()
        })
        .collect();

    let corpora = [
        ("random 16-digit ids", &random_16_digits),
        ("german gtin-13", &gtin_13),
        ("snowflakes on the unix epoch", &unix_epoch_snowflakes),
    ];
    for (name, values) in corpora {
        let hits = false_positive_count(&Detector::Card, values);
        eprintln!(
            "card false-positive rate on {name}: {hits} of {} = {:.2} %",
            values.len(),
            hits as f64 / values.len() as f64 * 100.0
        );
        assert!(hits < values.len() / 5, "{name}");
    }
}

/// Returns a shape that rejects nothing, so every detector runs its full
/// search.
fn permissive_shape() -> Shape {
    Shape {
        card_run_digits: usize::MAX,
        phone_run_digits: usize::MAX,
        at_sign: true,
        plus: true,
        iban_start: true,
    }
}

/// The quick rejection must never change a result: on random text made of
/// the bytes detectors care about, each detector finds the same spans with
/// and without it.
#[test]
fn shape_rejection_changes_no_result() {
    const ALPHABET: &[u8] = b"0123456789012345678901234567890123456789 -.+()@/:TZDEGBab";
    let detectors = [
        Detector::Card,
        Detector::Email,
        Detector::Phone,
        Detector::Iban,
    ];
    let known: Vec<String> = [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555555555554444",
        "+44 20 7946 0958",
        "+1 (415) 555-2671",
        "(415) 555-2671",
        "030 1234 5678",
        "GB82 WEST 1234 5698 7654 32",
        "DE89370400440532013000",
        "user@example.com",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let mut rng = SplitMix(7);
    let mut texts = known.clone();
    for _ in 0..20_000 {
        let length = 1 + rng.below(40) as usize;
        let mut text: String = (0..length)
            .map(|_| char::from(ALPHABET[rng.below(ALPHABET.len() as u64) as usize]))
            .collect();
        if rng.below(4) == 0 {
            let known = &known[rng.below(known.len() as u64) as usize];
            text.insert_str(rng.below(text.len() as u64 + 1) as usize, known);
        }
        texts.push(text);
    }

    for text in &texts {
        for detector in &detectors {
            assert_eq!(
                detector.find_with(text, &Shape::of(text)),
                detector.find_with(text, &permissive_shape()),
                "{detector:?} on {text:?}"
            );
        }
    }
}

#[test]
fn dates_rejected_before_any_search() {
    let shape = Shape::of("2026-01-01T08:30:00Z");
    assert!(!Detector::Card.may_match(&shape), "card");
    assert!(!Detector::Phone.may_match(&shape), "phone");
}
