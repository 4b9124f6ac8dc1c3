//! `ByteSize` and `Dur`: parsing, printing and rejects.

use std::time::Duration;

use synod_config::{ByteSize, Dur};

#[test]
fn sizes_parse() {
    let cases = [
        ("4096", 4096),
        ("0", 0),
        ("100B", 100),
        ("512KiB", 512 << 10),
        ("64MiB", 64 << 20),
        ("64 MiB", 64 << 20),
        ("64mib", 64 << 20),
        ("1GB", 1_000_000_000),
        ("2GiB", 2 << 30),
        ("1TiB", 1 << 40),
        ("3kb", 3000),
        (" 7MB ", 7_000_000),
    ];
    for (text, want) in cases {
        assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(want)), "{text:?}");
    }
}

#[test]
fn sizes_reject() {
    for text in ["12XB", "", "-1", "-1MiB", "1.5GiB", "MiB", "5 parsecs", "64 M i B", "0x10"] {
        let e = text.parse::<ByteSize>().expect_err(text);
        assert!(e.to_string().starts_with(&format!("invalid size {text:?}")), "{e}");
    }
}

#[test]
fn size_overflow_is_an_error_not_a_panic() {
    for text in ["16385PiB", "17179869184GiB", "18446744073709551616", "99999999999999999999999TiB"] {
        let e = text.parse::<ByteSize>().expect_err(text);
        assert!(e.to_string().contains("too large") || e.to_string().contains("use e.g."), "{e}");
    }
    assert_eq!("18446744073709551615".parse::<ByteSize>(), Ok(ByteSize(u64::MAX)));
    assert!("16777216TiB".parse::<ByteSize>().is_err());
}

#[test]
fn sizes_round_trip_through_display() {
    for n in [0, 1, 999, 1000, 1024, 1536, 4096, 1 << 20, 10_000_000, 3 << 30, u64::MAX, u64::MAX - 1] {
        let size = ByteSize(n);
        assert_eq!(size.to_string().parse::<ByteSize>(), Ok(size), "{size}");
    }
    assert_eq!(ByteSize::mib(64).to_string(), "64MiB");
    assert_eq!(ByteSize::mib(64).as_u64(), 64 << 20);
}

#[test]
fn durations_parse() {
    let cases = [
        ("500ms", Duration::from_millis(500)),
        ("5s", Duration::from_secs(5)),
        ("2m", Duration::from_secs(120)),
        ("1h", Duration::from_secs(3600)),
        ("1d", Duration::from_secs(86_400)),
        ("250us", Duration::from_micros(250)),
        ("250µs", Duration::from_micros(250)),
        ("7ns", Duration::from_nanos(7)),
        ("1m30s", Duration::from_secs(90)),
        ("1h 2m", Duration::from_secs(3720)),
        ("5 s", Duration::from_secs(5)),
        ("0", Duration::ZERO),
        ("0s", Duration::ZERO),
    ];
    for (text, want) in cases {
        assert_eq!(text.parse::<Dur>(), Ok(Dur(want)), "{text:?}");
    }
}

#[test]
fn durations_reject() {
    for text in ["fast", "", "-1s", "5 parsecs", "5", "1.5s", "s", "5S", "5sec", "1h-2m", "1e3ms"] {
        let e = text.parse::<Dur>().expect_err(text);
        assert!(e.to_string().starts_with(&format!("invalid duration {text:?}")), "{e}");
    }
}

#[test]
fn duration_overflow_is_an_error_not_a_panic() {
    for text in [
        "18446744073709551616s",
        "999999999999999999999d",
        "340282366920938463463374607431768211456ns",
        "18446744073709551615s 1s",
        "213503982334602d",
    ] {
        let e = text.parse::<Dur>().expect_err(text);
        assert!(e.to_string().contains("too large"), "{e}");
    }
    assert_eq!("18446744073709551615s".parse::<Dur>(), Ok(Dur(Duration::from_secs(u64::MAX))));
}

#[test]
fn durations_round_trip_through_display() {
    for d in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_micros(1500),
        Duration::from_millis(100),
        Duration::from_secs(90),
        Duration::from_secs(3600),
        Duration::new(5, 1),
        Duration::MAX,
    ] {
        let dur = Dur(d);
        assert_eq!(dur.to_string().parse::<Dur>(), Ok(dur), "{dur}");
    }
    assert_eq!(Dur::from_millis(500).to_string(), "500ms");
    assert_eq!(Dur::from_secs(5).get(), Duration::from_secs(5));
}

#[test]
fn units_deserialize_from_yaml_scalars() {
    let size: ByteSize = serde_saphyr::from_str("4096").expect("an integer is bytes");
    assert_eq!(size, ByteSize(4096));
    let size: ByteSize = serde_saphyr::from_str("64MiB").expect("a string with a unit");
    assert_eq!(size, ByteSize::mib(64));
    let dur: Dur = serde_saphyr::from_str("250us").expect("a duration");
    assert_eq!(dur, Dur(Duration::from_micros(250)));
    assert!(serde_saphyr::from_str::<Dur>("30").is_err(), "a unit is required");
    assert!(serde_saphyr::from_str::<ByteSize>("-1").is_err());
}
