/**
 * Runs a bench script's main and exits with its code (0 when it returns nothing): the servers it
 * started are child processes or handles that would otherwise keep the process alive. A failure
 * prints its stack, with `prefix`, and exits 1.
 */
export function runScript(main: () => Promise<number | void>, prefix = ""): void {
  main().then(
    (code) => process.exit(code ?? 0),
    (err: unknown) => {
      process.stderr.write(`${prefix}${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
