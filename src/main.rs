//! The `portcullis` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A security and compliance gateway for HTTP APIs.
#[derive(Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Configuration file (YAML). Without it the embedded default is
        /// used: the users API example on 127.0.0.1:3000, protected, served
        /// on 127.0.0.1:8080 with the demo key set.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Worker threads of the async runtime. Default: one per CPU core.
        #[arg(long, value_name = "COUNT", value_parser = clap::value_parser!(u16).range(1..=1024))]
        threads: Option<u16>,
        /// Log filter in tracing's EnvFilter syntax, such as `info` or
        /// `portcullis=debug`. Overrides the PORTCULLIS_LOG variable.
        /// Default: info.
        #[arg(long, value_name = "FILTER")]
        log: Option<String>,
    },
    /// Validate a configuration file and print every problem with its
    /// location. Exits with 1 when there is any problem.
    Check {
        /// Configuration file (YAML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Work with tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Work with Rego policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run the Rego tests (rules named test_*) of the policies in a
    /// directory, like `opa test`. Exits with 1 when any test fails or
    /// errors, or when the policies do not compile.
    Test {
        /// Directory of .rego policies and their .json/.yaml data.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// List every test, not only the failures.
        #[arg(short, long)]
        verbose: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Sign a JWT access token with a local private key, for demos and
    /// tests. Production tokens come from an identity provider.
    Mint {
        /// PKCS#8 PEM private key (RSA, P-256, P-384 or Ed25519).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// `kid` header, which must match the key's entry in the JWKS.
        #[arg(long)]
        kid: String,
        /// Signing algorithm, such as ES256, RS256 or EdDSA. Default: the
        /// key's usual algorithm.
        #[arg(long)]
        alg: Option<String>,
        /// `iss` claim.
        #[arg(long)]
        issuer: String,
        /// `aud` claim.
        #[arg(long)]
        audience: String,
        /// `sub` claim.
        #[arg(long)]
        subject: String,
        /// `scope` claim: space-separated scopes.
        #[arg(long, default_value = "")]
        scope: String,
        /// Lifetime, such as 15m or 1h; sets `exp`.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// Extra claims as NAME=VALUE (VALUE is JSON when it parses as
        /// JSON, else a string). Repeatable.
        #[arg(long = "claim", value_name = "NAME=VALUE")]
        claims: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            threads,
            log,
        } => portcullis::run::serve(config, threads.map(usize::from), log),
        Command::Check { config } => portcullis::run::check(&config),
        Command::Policy(PolicyCommand::Test { dir, verbose }) => {
            portcullis::run::policy_test(&dir, verbose)
        }
        Command::Token(TokenCommand::Mint {
            key,
            kid,
            alg,
            issuer,
            audience,
            subject,
            scope,
            ttl,
            claims,
        }) => {
            let request = portcullis::run::MintRequest {
                key,
                kid,
                alg,
                issuer,
                audience,
                subject,
                scope,
                ttl,
                claims,
            };
            portcullis::run::mint(request)
        }
    }
}
