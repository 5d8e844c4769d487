// The rejection part of a POST /v1/events answer, bounded whatever the request holds: the first `listed`
// rejections with their index and reason (the `rejected` array clients read), plus the total and a count per
// kind of reason (`rejectedCount`, `rejectedByReason`, keyed "field:rule" without user data, e.g. "dims.value:unicode").

export interface Rejected {
  index: number;
  reason: string;
}

export class RejectionList {
  readonly listed: Rejected[] = [];
  readonly byReason: Record<string, number> = {};
  private total = 0;

  constructor(private readonly max: number) {}

  /** Every rejection counted so far (listed or not). */
  get length(): number {
    return this.total;
  }

  /** Records a rejection; `kind` groups it in rejectedByReason. Beyond `max` only the counts grow. */
  push(r: Rejected, kind = 'other'): void {
    this.total++;
    this.byReason[kind] = (this.byReason[kind] ?? 0) + 1;
    if (this.listed.length < this.max) this.listed.push(r);
  }
}
