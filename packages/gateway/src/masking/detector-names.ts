/** The kinds of sensitive value that result masking can find, as rules and connections name them. */
export const detectorNames = ["email", "phone", "card", "ssn", "iban", "secret"] as const;

export type DetectorName = (typeof detectorNames)[number];
