/* Does a hand-written AVX2/FMA dot kernel (4 rows per pass) beat OpenBLAS sgemv over 400k x 100 f32, one core?
 * cc -O2 -o /tmp/k loadtest/dot_kernel.c $(pkg-config --cflags --libs openblas) -lm && /tmp/k MATRIX.npy (a v1 .npy,
 * 400000 x 100 <f4, 128-byte header; e.g. embd convert of the bench GloVe text). 2026-11-23: sgemv 19.0 ms, AVX2
 * 19.9 ms (medians of 3): the loop is not what limits a lone query, the memory is. */
#include <cblas.h>
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
__attribute__((target("avx2,fma")))
static void dots(const float *A, size_t rows, size_t dim, const float *q, float *out){
  size_t r=0;
  for(;r+4<=rows;r+=4){
    const float *a0=A+r*dim,*a1=a0+dim,*a2=a1+dim,*a3=a2+dim;
    __m256 s0=_mm256_setzero_ps(),s1=s0,s2=s0,s3=s0; size_t j=0;
    for(;j+8<=dim;j+=8){__m256 x=_mm256_loadu_ps(q+j);
      s0=_mm256_fmadd_ps(_mm256_loadu_ps(a0+j),x,s0);s1=_mm256_fmadd_ps(_mm256_loadu_ps(a1+j),x,s1);
      s2=_mm256_fmadd_ps(_mm256_loadu_ps(a2+j),x,s2);s3=_mm256_fmadd_ps(_mm256_loadu_ps(a3+j),x,s3);}
    float t[4][8];_mm256_storeu_ps(t[0],s0);_mm256_storeu_ps(t[1],s1);_mm256_storeu_ps(t[2],s2);_mm256_storeu_ps(t[3],s3);
    for(int k=0;k<4;k++){float s=0;for(int i=0;i<8;i++)s+=t[k][i];const float*a=A+(r+k)*dim;for(size_t jj=j;jj<dim;jj++)s+=a[jj]*q[jj];out[r+k]=s;}
  }
  for(;r<rows;r++){float s=0;for(size_t j=0;j<dim;j++)s+=A[r*dim+j]*q[j];out[r]=s;}
}
int main(int argc,char**argv){
  size_t rows=400000,dim=100,blk=2621; openblas_set_num_threads(1);
  FILE*f=fopen(argv[1],"rb"); fseek(f,0,SEEK_END); long n=ftell(f); fseek(f,128,SEEK_SET);
  float*A=malloc(rows*dim*4); fread(A,4,rows*dim,f); fclose(f);
  float q[100]; for(int i=0;i<100;i++)q[i]=A[i];
  float *sc=malloc(blk*4);
  for(int rep=0;rep<3;rep++){
  double t0=now(); for(int it=0;it<20;it++) for(size_t r=0;r<rows;r+=blk){size_t b=rows-r<blk?rows-r:blk; cblas_sgemv(CblasRowMajor,CblasNoTrans,(int)b,(int)dim,1.0f,A+r*dim,(int)dim,q,1,0.0f,sc,1);} 
  double t1=now(); for(int it=0;it<20;it++) for(size_t r=0;r<rows;r+=blk){size_t b=rows-r<blk?rows-r:blk; dots(A+r*dim,b,dim,q,sc);} double t2=now();
  printf("sgemv %.2f ms  avx2 %.2f ms\n",(t1-t0)/20*1e3,(t2-t1)/20*1e3);}
  (void)n; return 0;}
