#!/usr/bin/env python3
# Reference values for src/report/stats/tests.rs, computed with scipy (not needed at run time):
#   python3 -m venv /tmp/sci && /tmp/sci/bin/pip install scipy numpy && /tmp/sci/bin/python scripts/statistics-reference.py
import numpy as np, scipy, scipy.stats as st
print("scipy", scipy.__version__)
x=np.array([0.8604,0.8828,0.8746,0.8690,0.8712])
a=np.array([0.8676,0.8786,0.8782,0.8710,0.8690])
print("mean %.17g std %.17g"%(x.mean(), x.std(ddof=1)))
print("t interval", repr(st.t.interval(0.95, len(x)-1, loc=x.mean(), scale=st.sem(x))))
d=a-x
print("diffs", d)
print("ttest_rel", repr(st.ttest_rel(a,x).pvalue))
print("wilcoxon exact", repr(st.wilcoxon(a,x,method='exact').pvalue))
print("welch", repr(st.ttest_ind(a,x,equal_var=False).pvalue))
s=x.std(ddof=1); n=len(x)
lo=np.sqrt((n-1)*s*s/st.chi2.ppf(0.975,n-1)); hi=np.sqrt((n-1)*s*s/st.chi2.ppf(0.025,n-1))
print("std ci", repr((lo,hi)))
rng=np.random.default_rng(3)
big=rng.normal(0.001,0.01,30)
print("big", list(map(float,big)))
print("wilcoxon approx", repr(st.wilcoxon(big,method='approx',correction=False).pvalue))
print("mwu", st.mannwhitneyu(a,x).statistic/25)
