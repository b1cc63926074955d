fn main() {
    std::process::exit(labrun::run());
}
