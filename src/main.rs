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
    /// Review a configuration and the OpenAPI documents of the APIs
    /// behind it for security and compliance gaps. Exits with 0 when no
    /// finding reaches --fail-on, 1 when one does, 2 when an input cannot
    /// be read.
    Review {
        /// Configuration file (YAML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// OpenAPI 3.0 or 3.1 document (YAML or JSON). Repeatable. Without
        /// it the configuration is reviewed alone and the report lists the
        /// checks that needed documents.
        #[arg(long, value_name = "FILE")]
        openapi: Vec<PathBuf>,
        /// Report format.
        #[arg(long, default_value = "md", value_parser = ["html", "md", "json", "sarif"])]
        format: String,
        /// File to write the report to. Default: standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Lowest severity that makes the command exit with 1.
        #[arg(long, default_value = "high", value_parser = ["critical", "high", "medium", "low"])]
        fail_on: String,
    },
    /// Work with tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Work with Rego policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage API keys in the key file of a configuration's api_keys
    /// section.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Work with the tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check that audit files form one unbroken, unmodified chain: every
    /// line parses, seq is continuous, prev matches and checkpoints verify.
    /// Prints the first bad line and exits with 1 when one is found.
    Verify {
        /// Audit files (JSON Lines), in chain order.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// Ed25519 public key (PEM) to check checkpoint signatures with.
        /// Without it, signatures are not checked.
        #[arg(long, value_name = "PEM")]
        public_key: Option<PathBuf>,
        /// Require the log to end with a checkpoint, as a cleanly closed or
        /// rotated log does. This detects lines removed from the end.
        #[arg(long)]
        sealed: bool,
        /// Accept a chain that starts after seq 1 because older files were
        /// deleted.
        #[arg(long)]
        partial: bool,
    },
    /// Erase pseudonym keys (GDPR erasure): delete one subject's key, or
    /// every key of a tenant. Past records of the subject can then no
    /// longer be linked to it, and the log still verifies.
    Erase {
        /// The pseudonym key directory (`audit.pseudonyms.directory`).
        #[arg(long, value_name = "DIR")]
        pseudonyms: PathBuf,
        /// Tenant id, or `_default` for requests without a tenant.
        #[arg(long, value_name = "TENANT")]
        tenant: String,
        /// Subject to erase (the `sub` of its tokens). Without it, every
        /// key of the tenant is erased.
        #[arg(long, value_name = "SUBJECT")]
        subject: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key and print it once on standard output.
    Create {
        /// Configuration file (YAML) with an api_keys section.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Tenant the key belongs to; its requests may reach only that
        /// tenant's data.
        #[arg(long)]
        tenant: Option<String>,
        /// Scopes the key carries. Repeatable.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// A note for people, such as the client's name.
        #[arg(long, default_value = "")]
        label: String,
        /// Lifetime, such as 90d or 12h. Default: no expiry.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// List the keys (never their secrets).
    List {
        /// Configuration file (YAML) with an api_keys section.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replace a key with a new one (printed once); the old key keeps
    /// working for the overlap.
    Rotate {
        /// Configuration file (YAML) with an api_keys section.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// The key's name, pk_<id>.
        #[arg(value_name = "KEY")]
        name: String,
        /// How long the old key stays valid, such as 24h.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        overlap: std::time::Duration,
    },
    /// Revoke a key at once.
    Revoke {
        /// Configuration file (YAML) with an api_keys section.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// The key's name, pk_<id>.
        #[arg(value_name = "KEY")]
        name: String,
    },
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
    /// Revoke a token (by issuer and jti), or every token of a subject or
    /// client issued until now, in the shared store: every instance
    /// refuses it within a second.
    Revoke {
        /// Configuration file (YAML) whose rate_limit_store is Redis.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// `iss` of the tokens to revoke.
        #[arg(long)]
        issuer: String,
        /// `jti` of the one token to revoke; needs --expires-at.
        #[arg(long, conflicts_with_all = ["subject", "client"], requires = "expires_at")]
        jti: Option<String>,
        /// `exp` of that token, in Unix seconds: the revocation is kept
        /// until then.
        #[arg(long, value_name = "UNIX_SECONDS")]
        expires_at: Option<u64>,
        /// Revoke every token of this subject (`sub`) issued until now.
        #[arg(long, conflicts_with = "client")]
        subject: Option<String>,
        /// Revoke every token of this client id issued until now.
        #[arg(long)]
        client: Option<String>,
    },
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
    /// Add a signing key to the token service's keys directory: published
    /// at once, signing after the publish delay. Keys whose tokens have
    /// all expired are deleted.
    RotateKeys {
        /// Configuration file (YAML) with a token_service section.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// How long the new key is published before it signs, such as 5m.
        /// Default: token_service.token_ttl.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        publish_delay: Option<std::time::Duration>,
    },
    /// Make a client's secret_hash for token_service.clients. Without
    /// --stdin, generate a secret and print it once on standard output.
    HashSecret {
        /// File to write the hash to (mode 0600). Required without --stdin;
        /// with it, the hash goes to standard output when left out.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Read the secret from standard input instead of generating one.
        #[arg(long)]
        stdin: bool,
    },
}

fn key(command: KeyCommand) -> ExitCode {
    use portcullis::apikey::cli;
    match command {
        KeyCommand::Create {
            config,
            tenant,
            scopes,
            label,
            expires_in,
        } => cli::create(
            &config,
            cli::NewKey {
                tenant,
                scopes,
                label,
                expires_in,
            },
        ),
        KeyCommand::List { config, json } => cli::list(&config, json),
        KeyCommand::Rotate {
            config,
            name,
            overlap,
        } => cli::rotate(&config, &name, overlap),
        KeyCommand::Revoke { config, name } => cli::revoke(&config, &name),
    }
}

fn main() -> ExitCode {
    // Usage errors exit with 2, as clap does by default; `review` keeps 1
    // for findings.
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            threads,
            log,
        } => portcullis::run::serve(config, threads.map(usize::from), log),
        Command::Check { config } => portcullis::run::check(&config),
        Command::Review {
            config,
            openapi,
            format,
            output,
            fail_on,
        } => {
            use portcullis::review::{model::Severity, Format, Options};
            let options = Options {
                config,
                openapi,
                format: Format::parse(&format).expect("clap allows only known formats"),
                output,
                fail_on: Severity::parse(&fail_on).expect("clap allows only known severities"),
            };
            portcullis::review::command(&options)
        }
        Command::Key(command) => key(command),
        Command::Audit(AuditCommand::Verify {
            files,
            public_key,
            sealed,
            partial,
        }) => portcullis::audit::verify_command(&files, public_key.as_deref(), sealed, partial),
        Command::Audit(AuditCommand::Erase {
            pseudonyms,
            tenant,
            subject,
        }) => portcullis::audit::erase_command(&pseudonyms, &tenant, subject.as_deref()),
        Command::Policy(PolicyCommand::Test { dir, verbose }) => {
            portcullis::run::policy_test(&dir, verbose)
        }
        Command::Token(TokenCommand::Revoke {
            config,
            issuer,
            jti,
            expires_at,
            subject,
            client,
        }) => {
            use portcullis::revocation::Target;
            let target = match (jti, subject, client) {
                (Some(jti), None, None) => Target::Token {
                    issuer,
                    jti,
                    expires_at: expires_at.unwrap_or_default(),
                },
                (None, Some(subject), None) => Target::Subject { issuer, subject },
                (None, None, Some(client_id)) => Target::Client { issuer, client_id },
                _ => {
                    eprintln!("error: name exactly one of --jti, --subject or --client");
                    return ExitCode::FAILURE;
                }
            };
            portcullis::revocation::revoke_command(&config, target)
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
        Command::Token(TokenCommand::RotateKeys {
            config,
            publish_delay,
        }) => portcullis::token_service::cli::rotate_keys(&config, publish_delay),
        Command::Token(TokenCommand::HashSecret { out, stdin }) => {
            portcullis::token_service::cli::hash_secret(out.as_deref(), stdin)
        }
    }
}
