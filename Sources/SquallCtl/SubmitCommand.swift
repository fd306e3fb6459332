import ArgumentParser
import SquallCore

/// `squallctl submit --batch NAME FILE|-`: writes a batch from a manifest, all or nothing.
struct SubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Submit a batch from a manifest file, or - for standard input.",
        discussion: """
            The manifest is CSV with the header source,destination[,priority][,sha256] or JSON Lines \
            ({"source":…,"destination":…}), detected from the content. Every line is validated; one bad \
            line rejects the whole manifest, every bad line is reported and nothing is written.
            """)

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("batch"), help: "The new batch's name (unique).")
    var batch: String

    @Argument(help: "The manifest file, or - to read standard input.")
    var manifest: String

    @Flag(name: .customLong("json"), help: "Print the batch as JSON.")
    var json = false

    func validate() throws {
        guard !batch.isEmpty, batch.count <= 200 else { throw ValidationError("--batch must be 1 to 200 characters") }
    }

    func run() async throws {
        let input: ManifestInput = manifest == "-" ? .standardInput : .file(path: manifest)
        try await RepositoryAccess.run(common, command: "submit") { repository in
            do {
                let submitted = try await repository.submit(batchName: batch, manifest: input)
                if json {
                    try RepositoryAccess.printJSON(submitted)
                } else {
                    print("submitted batch \(submitted.name) (id \(submitted.id)): \(submitted.jobCount) jobs")
                }
            } catch let error as ManifestError {
                RepositoryAccess.printError(
                    "squallctl submit: \(input.name) rejected, nothing was submitted:\n\(error)")
                throw ExitCode(65)
            }
        }
    }
}
