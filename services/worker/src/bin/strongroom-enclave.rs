//! The enclave program. Started only by enclave-sim (or a real TEE launcher); talks to its host
//! over stdin/stdout and to its platform over fd 3.

fn main() -> std::process::ExitCode {
    strongroom_worker::enclave::main()
}
